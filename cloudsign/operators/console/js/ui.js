// Small shared UI helpers: status messages, busy forms, error wording, the
// "waiting for a second operator" answer, table cells.

import { ApiError } from "./api.js";
import { t } from "./i18n.js";

export const $ = (id) => document.getElementById(id);

export function say(el, text, kind = "") {
  if (!el) return;
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

/** "15 min" / "40 s": how long a lock or a rate limit still holds (Retry-After). */
export function formatWait(retryAfter) {
  const seconds = Number.parseInt(retryAfter ?? "", 10);
  if (!Number.isFinite(seconds)) return null;
  if (seconds < 60) return t("time.seconds", null, { n: Math.max(1, seconds) });
  return t("time.minutes", null, { n: Math.ceil(seconds / 60) });
}

/** A server error in the operator's language; the server's detail as a fallback. */
export function describeError(e) {
  if (e instanceof ApiError) {
    if (e.status === 423 || e.status === 429) {
      const wait = formatWait(e.retryAfter);
      const text = t("error." + e.code, e.message);
      return wait ? text + " " + t("error.wait", null, { time: wait }) : text;
    }
    if (e.reason) return t("error." + e.code, e.message) + " " + t("reason." + e.reason, e.reason);
    return t("error." + e.code, e.message);
  }
  return e?.message || String(e);
}

/** Run `fn` with the element's buttons disabled; report a failure in `status`. */
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

/**
 * Report a two-person answer: 202 says the action waits for a second
 * operator; the status element carries the approval's id for the page.
 * Returns true when the action is pending.
 */
export function reportPending(result, status) {
  if (result.status !== 202) {
    delete status.dataset.approval;
    return false;
  }
  say(status, t("pending", null, { id: result.body.approval_id }), "pending");
  status.dataset.approval = result.body.approval_id;
  document.dispatchEvent(new CustomEvent("approvalschanged"));
  return true;
}

export function formatTime(iso) {
  if (!iso) return "—";
  const lang = document.documentElement.lang || "en";
  return new Date(iso).toLocaleString(lang === "kk" ? "kk-KZ" : lang === "ru" ? "ru-RU" : "en-GB");
}

/** Non-empty trimmed lines of a textarea. */
export function lines(el) {
  return el.value
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** A table cell holding `text` (never HTML). */
export function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

export function badge(text, kind) {
  const span = document.createElement("span");
  span.className = "badge " + kind;
  span.textContent = text;
  return span;
}

export function button(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}
