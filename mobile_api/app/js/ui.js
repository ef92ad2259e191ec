// The app's UI helpers: the portal's (/portal/static/js/ui.js) where they fit,
// with the app's wording of a refused factor (the possession factor here is
// this phone, not a one-time code).

import { ApiError } from "./api.js";
import { t } from "./i18n.js";
import {
  describeError as portalDescribe,
  download,
  formatBytes,
  formatTime,
  isLimit,
  say,
  takeValue,
} from "/portal/static/js/ui.js";

export { download, formatBytes, formatTime, isLimit, say, takeValue };

export function describeError(e) {
  if (e instanceof ApiError && e.code === "factor_failed") return t("app.error.factor_failed");
  return portalDescribe(e);
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
    say(status, describeError(e), isLimit(e) ? "bad limit" : "bad");
    return false;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    el.removeAttribute("aria-busy");
  }
}

/** The banner at the top of the app (empty text hides it). */
export function flash(text, kind = "") {
  const el = document.getElementById("flash");
  el.textContent = text;
  el.className = "flash" + (kind ? " " + kind : "");
  el.hidden = !text;
}

export const $ = (id) => document.getElementById(id);
