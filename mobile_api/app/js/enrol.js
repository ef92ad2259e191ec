// Setting the app up after identity proofing at a registration desk:
// activation code -> consents -> face check -> this phone bound -> key
// password and a second face check -> the key and certificate -> done.
//
// The phone takes the place of the TOTP code: binding it at enrolment needs
// the face check alone (the redeemed activation code is the possession of
// that moment), and the key is then made with the phone's assertion for
// purpose "enrol". Each step is resumable: on entry the app asks the server
// what is done.

import { api, ApiError, sessionScope, setScope, setSession, signedIn } from "./api.js";
import { FaceCheck } from "./face.js";
import { deviceProof, passwordKey } from "./factors.js";
import { language, t } from "./i18n.js";
import { enablePush } from "./push.js";
import { $, busy, describeError, say, takeValue } from "./ui.js";
import { register, rememberDevice } from "./webauthn.js";
import { acceptConsents, consentsPending, showConsents } from "/portal/static/js/consents.js";

const STEPS = ["code", "consent", "face", "device", "key", "done"];
// As cloudsign/proofing: 20 characters of this alphabet, shown in groups of four.
const CODE_LENGTH = 20;
let bindFace = null;
let keyFace = null;
let current = null;

function show(step) {
  current = step;
  const at = STEPS.indexOf(step);
  document.querySelectorAll("[data-view=enrol] .steps li").forEach((li) => {
    const i = STEPS.indexOf(li.dataset.step);
    li.classList.toggle("current", i === at);
    li.classList.toggle("done", i < at);
    if (i === at) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
  });
  document.querySelectorAll("[data-view=enrol] [data-panel]").forEach((panel) => {
    panel.hidden = panel.dataset.panel !== step;
  });
  document.body.dataset.step = step;
}

/** The code as the desk prints it (upper case, groups of four), or null. */
function normaliseCode(text) {
  const raw = String(text || "").toUpperCase().replace(/[^A-Z0-9]/g, "");
  if (raw.length !== CODE_LENGTH) return null;
  return raw.match(/.{4}/g).join("-");
}

/** A name for this phone to start from: the model the browser names, if any. */
function suggestedName() {
  const model = /Android [\d.]+; ([^;)]+)/.exec(navigator.userAgent)?.[1]?.trim();
  if (model && model !== "K") return model.slice(0, 64);
  if (/iPhone/.test(navigator.userAgent)) return "iPhone";
  return "Phone";
}

/** Where this enrolment stands, from the server's own record. */
async function currentStep() {
  if (!signedIn()) return "code";
  if (sessionScope() === "full") {
    const creds = await api("GET", "/api/v1/me/credentials");
    const active = creds.find((c) => c.status === "active");
    if (!active) return "code";
    $("done-serial").textContent = active.certificate_serial;
    return "done";
  }
  if (await consentsPending(api, await api("GET", "/api/v1/me"), language())) return "consent";
  const { devices } = await api("GET", "/api/v1/me/devices");
  if (!devices.some((d) => d.status === "active")) return bindFace.passed ? "device" : "face";
  return "key";
}

async function enterStep(step) {
  show(step);
  if (step === "consent") await loadConsents();
  if (step === "device" && !$("device-name").value) $("device-name").value = suggestedName();
}

export async function enterEnrol(arg) {
  say(document.querySelector("#activate-form .status"), "");
  if (arg?.code) {
    $("activation-code").value = normaliseCode(arg.code) || arg.code;
    show("code");
    return;
  }
  await enterStep(await currentStep());
}

async function loadConsents() {
  await showConsents(api, t, language(), $("consent-list"));
}

async function onActivate(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(":scope > .status");
  const input = $("activation-code");
  const code = normaliseCode(input.value);
  input.setCustomValidity(code ? "" : t("enrol.code.invalid"));
  if (!form.reportValidity()) return;
  await busy(form, async () => {
    say(status, t("enrol.code.checking"));
    let answer;
    try {
      answer = await api("POST", "/api/v1/activations", { body: { code } });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) throw new Error(t("enrol.code.refused"));
      throw e;
    }
    input.value = "";
    setSession(answer, answer.scope || "enrolment");
    bindFace.reset();
    keyFace.reset();
    say(status, "");
    await enterStep(await currentStep());
  }, status);
}

async function onConsent(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(":scope > .status");
  if (!form.reportValidity()) return;
  await busy(form, async () => {
    await acceptConsents(api, form);
    say(status, "");
    await enterStep(await currentStep());
  }, status);
}

async function onBind(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(":scope > .status");
  if (!form.reportValidity()) return;
  if (!bindFace.passed) {
    show("face");
    return;
  }
  const ok = await busy(form, async () => {
    const name = $("device-name").value.trim();
    const check = bindFace.take(); // spent by this attempt, whatever its outcome
    const issued = await api("POST", "/api/v1/me/devices/registration");
    say(status, t("app.phone.confirm"));
    const credential = await register(issued.options);
    const device = await api("POST", "/api/v1/me/devices", {
      body: { challenge_id: issued.challenge_id, credential, name, face_challenge_id: check },
    });
    rememberDevice(device, credential.id);
    say(status, "");
    await enterStep(await currentStep());
  }, status);
  if (!ok) {
    // The face check is spent: the next try starts with a new one.
    const reason = status.textContent;
    show("face");
    say(bindFace.status, `${reason} ${t("enrol.key.retry")}`, "bad");
  }
}

async function onKey(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(":scope > .status");
  const pw = $("key-password");
  const pw2 = $("key-password2");
  pw2.setCustomValidity(pw.value === pw2.value ? "" : t("enrol.key.mismatch"));
  if (!form.reportValidity()) return;
  if (!keyFace.passed) {
    say(status, t("sign.noface"), "bad");
    return;
  }
  const ok = await busy(form, async () => {
    say(status, t("app.crypto.deriving"));
    let password = takeValue(pw);
    pw2.value = "";
    const check = keyFace.take(); // spent by this attempt, whatever its outcome
    let wrapped;
    try {
      wrapped = await passwordKey(password, "credential.create");
    } finally {
      password = null;
    }
    say(status, t("app.phone.confirm"));
    const device = await deviceProof("enrol");
    say(status, t("enrol.key.creating"));
    const cred = await api("POST", "/api/v1/me/credentials", {
      body: { algorithm: "ec-p256", password_key: wrapped, device, face_challenge_id: check },
    });
    // The enrolment session is now a full one (the same token, a new scope).
    setScope("full");
    $("done-serial").textContent = cred.certificate_serial;
    say(status, "");
    show("done");
    enablePush(); // this bound phone hears of new requests at once, where it can
  }, status);
  if (!ok) status.append(" ", t("enrol.key.retry"));
}

export function stopEnrol() {
  bindFace?.stop();
  keyFace?.stop();
}

export function initEnrol() {
  bindFace = new FaceCheck($("enrol-face"), { onPassed: () => enterStep("device") });
  keyFace = new FaceCheck($("key-face"));
  $("activate-form").addEventListener("submit", onActivate);
  $("activation-code").addEventListener("input", (ev) => ev.target.setCustomValidity(""));
  $("consent-form").addEventListener("submit", onConsent);
  $("device-form").addEventListener("submit", onBind);
  $("key-form").addEventListener("submit", onKey);
  // The consent texts follow the app's language.
  document.addEventListener("languagechange", () => {
    if (document.body.dataset.current === "enrol" && current === "consent") {
      loadConsents().catch((e) => say($("consent-form").querySelector(":scope > .status"), describeError(e), "bad"));
    }
  });
}
