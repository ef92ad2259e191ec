// Small shared UI helpers: status messages, busy forms, error wording.

import { ApiError } from "./api.js";
import { t } from "./i18n.js";

export function say(el, text, kind = "") {
  if (!el) return;
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

/** "15 min" / "40 s": how long a lock or a rate limit still holds. */
export function formatWait(seconds) {
  if (seconds === null || seconds === undefined) return t("time.while");
  if (seconds < 60) return t("time.seconds").replace("{n}", String(Math.max(1, seconds)));
  return t("time.minutes").replace("{n}", String(Math.ceil(seconds / 60)));
}

/** A server error in the citizen's language; the server's detail as a fallback. */
export function describeError(e) {
  if (e instanceof ApiError) {
    if (e.code === "locked" || e.code === "rate_limited") {
      return t("error." + e.code).replace("{time}", formatWait(e.retryAfter));
    }
    if (e.reason) return t("reason." + e.reason, e.detail);
    return t("error." + e.code, e.message);
  }
  return e?.message || String(e);
}

/** A refusal of the service's own limits (423 locked / 429 rate limited). */
export const isLimit = (e) => e instanceof ApiError && (e.status === 423 || e.status === 429);

/** The value of a secret input, cleared from the page at once. */
export function takeValue(input) {
  const value = input.value;
  input.value = "";
  return value;
}

let pendingFlash = null;

/** The banner at the top of the page (empty text hides it). */
export function flash(text, kind = "") {
  const el = document.getElementById("flash");
  el.textContent = text;
  el.className = "flash" + (kind ? " " + kind : "");
  el.hidden = !text;
}

/** A banner for the next view (the router clears the banner on every change). */
export function flashNext(text, kind = "") {
  pendingFlash = { text, kind };
}

/** The router's call: the pending banner, or none. */
export function showPendingFlash() {
  const next = pendingFlash;
  pendingFlash = null;
  flash(next?.text || "", next?.kind || "");
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
    say(status, describeError(e), isLimit(e) ? "bad limit" : "bad");
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
