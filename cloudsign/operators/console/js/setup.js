// A new operator's first visit: the one-time setup code a security officer
// handed over (typed, or from the link `#/setup/{code}`) and a password of
// their choosing, then the TOTP seed once (a QR code and the key for manual
// entry) and the first code from the app, which activates the account.
// Neither route needs a session; afterwards the operator signs in as usual.
//
// The password leaves the page with the first request; the seed is on the
// page only until the first code is confirmed or the operator leaves the
// set-up. Neither is ever written to web storage or the address.

import { api, ApiError } from "./api.js";
import { t } from "./i18n.js";
import { clearQr, drawQr } from "./qr.js";
import { $, busy, describeError, say } from "./ui.js";

// The server's rule (operator passwords), counted in code points as it counts them.
const MIN_PASSWORD = 12;
const MAX_PASSWORD = 256;
const OTP = /^\d{6,8}$/;

let view = "signin";
let setupCode = null; // between the two steps, in this module's memory only
let onDone = () => {};

/** The link that opens the set-up with `code` filled in (for the security officer). */
export function setupLink(code) {
  return `${location.origin}/console/#/setup/${encodeURIComponent(code)}`;
}

/**
 * Read the address. `#/setup` and `#/setup/{code}` open the set-up (the code
 * goes into the form and out of the address bar and the history); `#/` or
 * nothing is the sign-in. Any other fragment is an in-page anchor: false,
 * and the view stays.
 */
export function readAddress() {
  const hash = location.hash;
  if (hash && hash !== "#" && !hash.startsWith("#/")) return false;
  const [head, ...rest] = hash.replace(/^#\/?/, "").split("/");
  view = head === "setup" ? "setup" : "signin";
  const given = view === "setup" ? rest.join("/") : "";
  if (given) {
    history.replaceState(null, "", "#/setup");
    let code = given;
    try {
      code = decodeURIComponent(given);
    } catch {
      /* not %-encoded after all: the server says whether it is a code */
    }
    clearSetup();
    $("setup-code").value = code.trim();
  }
  return true;
}

export const setupShown = () => view === "setup";

/** The set-up became the view: focus the first field still empty. */
export function enterSetup() {
  const first = $("setup-totp-form").hidden
    ? [$("setup-code"), $("setup-password")].find((el) => !el.value) || $("setup-password")
    : $("setup-otp");
  first.focus({ preventScroll: true });
}

/** Forget everything the set-up holds: code, passwords, seed, QR, messages. */
export function clearSetup() {
  setupCode = null;
  for (const form of [$("setup-form"), $("setup-totp-form")]) {
    form.reset();
    for (const input of form.querySelectorAll("input")) input.setCustomValidity("");
    say(form.querySelector(".status"), "");
  }
  forgetSeed();
  $("setup-totp-form").hidden = true;
  $("setup-form").hidden = false;
}

function forgetSeed() {
  $("setup-account").textContent = "";
  $("setup-secret").textContent = "";
  const kind = $("setup-kind");
  kind.textContent = "";
  delete kind.dataset.digits;
  delete kind.dataset.period;
  clearQr($("setup-qr"));
}

function describeKind() {
  const kind = $("setup-kind");
  if (!kind.dataset.period) return;
  kind.textContent = t("setup.kind.value", null, kind.dataset);
}

/** A refusal in words the new operator can act on. */
function setupError(e, step) {
  if (!(e instanceof ApiError)) return e;
  if (e.status === 401) {
    return new Error(step === "begin" ? t("setup.code.refused") : t("setup.otp.refused"));
  }
  if (e.status === 400 && e.body.field === "password") {
    return new Error(t("setup.pw.length", null, { min: MIN_PASSWORD, max: MAX_PASSWORD }));
  }
  return new Error(describeError(e));
}

/** Check one field: its validity (`:invalid`, read out with the field) carries the message. */
function check(input, ok, message) {
  input.setCustomValidity(ok ? "" : message);
  return ok;
}

async function choosePassword(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  const codeInput = $("setup-code");
  const pw = $("setup-password");
  const pw2 = $("setup-password2");
  const code = codeInput.value.trim();
  const length = [...pw.value].length;
  const valid = [
    check(codeInput, code.length > 0, t("setup.code.missing")),
    check(
      pw,
      length >= MIN_PASSWORD && length <= MAX_PASSWORD,
      t("setup.pw.length", null, { min: MIN_PASSWORD, max: MAX_PASSWORD }),
    ),
    check(pw2, pw.value === pw2.value, t("setup.pw.mismatch")),
  ];
  if (!valid.every(Boolean)) {
    const first = form.querySelector(":invalid");
    say(status, first.validationMessage, "bad");
    first.focus();
    return;
  }
  await busy(form, async () => {
    say(status, "");
    let answer;
    try {
      answer = await api("POST", "/operator/api/v1/setup", {
        body: { setup_code: code, password: pw.value },
      });
    } catch (e) {
      if (e instanceof ApiError && e.status === 400) {
        pw.value = "";
        pw2.value = "";
      }
      throw setupError(e, "begin");
    }
    // The server has the password now; the page keeps neither copy.
    pw.value = "";
    pw2.value = "";
    setupCode = code;
    await showSeed(answer.provisioning_uri);
  }, status);
}

async function showSeed(uri) {
  const [head, query = ""] = uri.split("?", 2);
  const params = new URLSearchParams(query);
  let account = head.replace(/^otpauth:\/\/totp\//, "");
  try {
    account = decodeURIComponent(account);
  } catch {
    /* shown as it came */
  }
  $("setup-account").textContent = account;
  $("setup-secret").textContent = (params.get("secret") || "").replace(/(.{4})/g, "$1 ").trim();
  const kind = $("setup-kind");
  kind.dataset.digits = params.get("digits") || "6";
  kind.dataset.period = params.get("period") || "30";
  describeKind();
  $("setup-form").hidden = true;
  $("setup-totp-form").hidden = false;
  const status = $("setup-totp-form").querySelector(".status");
  say(status, (await drawQr($("setup-qr"), uri)) ? "" : t("setup.noqr"));
  $("setup-totp-h").focus();
}

async function confirm(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  const input = $("setup-otp");
  const otp = input.value.trim();
  if (!check(input, OTP.test(otp), t("setup.otp.invalid"))) {
    say(status, input.validationMessage, "bad");
    input.focus();
    return;
  }
  await busy(form, async () => {
    say(status, "");
    input.value = "";
    let operator;
    try {
      operator = await api("POST", "/operator/api/v1/setup/confirm", {
        body: { setup_code: setupCode, otp },
      });
    } catch (e) {
      throw setupError(e, "confirm");
    }
    clearSetup();
    await onDone(operator);
  }, status);
}

function restart() {
  const code = setupCode;
  clearSetup();
  $("setup-code").value = code || "";
  $("setup-password").focus();
}

/** `done(operator)`: called once the account is active (the set-up is cleared by then). */
export function initSetup({ done }) {
  onDone = done;
  $("setup-form").addEventListener("submit", choosePassword);
  $("setup-totp-form").addEventListener("submit", confirm);
  $("setup-restart").addEventListener("click", restart);
  for (const form of [$("setup-form"), $("setup-totp-form")]) {
    form.addEventListener("input", (ev) => ev.target.setCustomValidity?.(""));
  }
  document.addEventListener("languagechange", describeKind);
}
