// Small shared UI helpers: status messages, busy forms, error wording.

import { ApiError } from "./api.js";
import { t } from "./i18n.js";

export function say(el, text, kind = "") {
  if (!el) return;
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

/** A server error in the citizen's language; the server's detail as a fallback. */
export function describeError(e) {
  if (e instanceof ApiError) {
    if (e.reason) return t("reason." + e.reason, e.detail);
    return t("error." + e.code, e.message);
  }
  return e?.message || String(e);
}

/** Run `fn` with the form's buttons disabled; report a failure in `status`. */
export async function busy(el, fn, status) {
  const buttons = el.matches("button") ? [el] : [...el.querySelectorAll("button")];
  buttons.forEach((b) => (b.disabled = true));
  el.setAttribute("aria-busy", "true");
  try {
    await fn();
    return true;
  } catch (e) {
    say(status, describeError(e), "bad");
    return false;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    el.removeAttribute("aria-busy");
  }
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

export function formatTime(iso) {
  if (!iso) return "—";
  const lang = document.documentElement.lang || "en";
  return new Date(iso).toLocaleString(lang === "kk" ? "kk-KZ" : lang === "ru" ? "ru-RU" : "en-GB");
}

/** Save bytes the browser already holds as a file (the link stays usable). */
export function download(blob, filename, link) {
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  link.click();
}
