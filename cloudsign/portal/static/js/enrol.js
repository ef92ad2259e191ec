// Enrolment after identity proofing at a registration desk:
// activation code -> consents -> TOTP -> face check -> key password -> done.
//
// The desk hands out the code (and a link `#/activate/{code}`); redeeming it
// opens an enrolment session for the identity the officer checked. The
// reference face is the one captured at the desk, so the page only checks
// the live face against it, right before the key is made. Each step is
// resumable: on entry the page asks the server what is done.

import { api, ApiError, resumeSession, sessionScope, setSession, signedIn } from "./api.js";
import { passwordKeyFor } from "./crypto.js";
import { acceptConsents, consentsPending, showConsents } from "./consents.js";
import { FaceCheck } from "./facecheck.js";
import { language, t } from "./i18n.js";
import { busy, describeError, say, takeValue } from "./ui.js";
import { drawQr } from "./qrcanvas.js";

const STEPS = ["code", "consent", "totp", "face", "key", "done"];
// As cloudsign/proofing: 20 characters of this alphabet, shown in groups of four.
const CODE_LENGTH = 20;
const CODE_CHARS = /^[A-Z0-9]+$/;
const $ = (id) => document.getElementById(id);
let face = null;
let current = null;
let totpShownFor = null; // the owner whose new TOTP seed is on the page

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
  if (step !== "face") stopCamera();
  if (step === "face") face.refresh();
  const panel = document.querySelector(`[data-view=enrol] [data-panel=${step}]`);
  panel?.querySelector("input, button")?.focus();
}

export function stopCamera() {
  face?.stop();
}

/** The code as the desk prints it (upper case, groups of four), or null. */
export function normaliseCode(text) {
  const raw = String(text || "").toUpperCase().replace(/[^A-Z0-9]/g, "");
  if (raw.length !== CODE_LENGTH || !CODE_CHARS.test(raw)) return null;
  return raw.match(/.{4}/g).join("-");
}

/** Where this enrolment stands, from the server's own record. */
async function currentStep() {
  if (!signedIn()) return "code";
  const creds = await api("GET", "/api/v1/me/credentials");
  const active = creds.find((c) => c.status === "active");
  if (sessionScope() !== "enrolment") {
    // A login: enrolled already, or (key deleted) a new proofing is needed.
    if (!active) return "code";
    $("done-serial").textContent = active.certificate_serial;
    return "done";
  }
  const me = await api("GET", "/api/v1/me");
  if (await consentsPending(api, me, language())) return "consent";
  if (!me.totp_confirmed) return "totp";
  return face.passed ? "key" : "face";
}

async function enterStep(step) {
  show(step);
  if (step === "consent") await loadConsents();
  if (step === "totp") await beginTotp();
}

/** `code`: from the desk's link (#/activate/{code}), shown for the citizen to confirm. */
export async function enterEnrol({ code = null } = {}) {
  say(document.querySelector("#activate-form .status"), "");
  if (code !== null) {
    $("activation-code").value = normaliseCode(code) || code;
    show("code");
    $("activate-form").querySelector("button[type=submit]").focus();
    return;
  }
  await enterStep(await currentStep());
}

async function loadConsents() {
  await showConsents(api, t, language(), $("consent-list"));
}

async function beginTotp() {
  const status = document.querySelector("#totp-form .status");
  const me = await api("GET", "/api/v1/me");
  if (totpShownFor === me.owner_id) return;
  try {
    const { provisioning_uri: uri } = await api("POST", "/api/v1/me/totp");
    totpShownFor = me.owner_id;
    drawQr($("totp-qr"), uri);
    const secret = new URL(uri).searchParams.get("secret") || "";
    $("totp-secret").textContent = secret.replace(/(.{4})/g, "$1 ").trim();
  } catch (e) {
    say(status, describeError(e), "bad");
  }
}

function clearTotp() {
  $("totp-secret").textContent = "";
  const canvas = $("totp-qr");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
}

async function onActivate(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  const input = $("activation-code");
  const code = normaliseCode(input.value);
  input.setCustomValidity(code ? "" : t("enrol.code.invalid"));
  if (!form.reportValidity()) return;
  await busy(form, async () => {
    say(status, t("enrol.code.checking"));
    let s;
    try {
      s = await api("POST", "/portal/session/activate", { body: { code } });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) throw new Error(t("enrol.code.refused"));
      throw e;
    }
    input.value = "";
    setSession(s.csrf_token, "enrolment");
    face.reset();
    totpShownFor = null;
    clearTotp();
    say(status, "");
    await enterStep(await currentStep());
  }, status);
}

async function onConsent(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!form.reportValidity()) return;
  await busy(form, async () => {
    await acceptConsents(api, form);
    say(status, "");
    await enterStep(await currentStep());
  }, status);
}

async function onTotp(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!form.reportValidity()) return;
  await busy(form, async () => {
    await api("POST", "/api/v1/me/totp/confirm", { body: { otp: takeValue($("totp-code")).trim() } });
    clearTotp();
    say(status, "");
    await enterStep(await currentStep());
  }, status);
}

async function onKey(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  const pw = $("key-password");
  const pw2 = $("key-password2");
  pw2.setCustomValidity(pw.value === pw2.value ? "" : t("enrol.key.mismatch"));
  if (!form.reportValidity()) return;
  if (!face.passed) {
    show("face");
    say(face.status, t("sign.noface"), "bad");
    return;
  }
  const ok = await busy(form, async () => {
    say(status, t("crypto.deriving"));
    let password = takeValue(pw);
    pw2.value = "";
    const otp = takeValue($("key-otp")).trim();
    const check = face.take(); // spent by this attempt, whatever its outcome
    let wrapped;
    try {
      wrapped = await passwordKeyFor(api, password, "credential.create");
    } finally {
      password = null;
    }
    say(status, t("enrol.key.creating"));
    const cred = await api("POST", "/api/v1/me/credentials", {
      body: { algorithm: "ec-p256", password_key: wrapped, otp, face_challenge_id: check },
    });
    // The enrolment session is now a full one (same cookie, new scope).
    await resumeSession();
    $("done-serial").textContent = cred.certificate_serial;
    say(status, "");
    show("done");
  }, status);
  if (!ok) status.append(" ", t("enrol.key.retry"));
}

export function initEnrol() {
  face = new FaceCheck({
    video: $("enrol-video"),
    guide: $("enrol-guide"),
    banner: $("enrol-action"),
    status: $("enrol-face-status"),
    button: $("enrol-face-start"),
    onPassed: () => show("key"),
  });
  $("activate-form").addEventListener("submit", onActivate);
  $("activation-code").addEventListener("input", (ev) => ev.target.setCustomValidity(""));
  $("consent-form").addEventListener("submit", onConsent);
  $("totp-form").addEventListener("submit", onTotp);
  $("key-form").addEventListener("submit", onKey);
  // The consent texts follow the page's language.
  document.addEventListener("languagechange", () => {
    if (document.body.dataset.current === "enrol" && current === "consent") {
      loadConsents().catch((e) => say($("consent-form").querySelector(".status"), describeError(e), "bad"));
    }
  });
}
