// Enrolment: identity -> consents -> face -> TOTP -> key password -> done.
// Each step is resumable: on entry the page asks the server what is done.

import { api, ApiError, setSession, signedIn } from "./api.js";
import { Camera } from "./camera.js";
import { passwordKeyFor, sha256, hex } from "./crypto.js";
import { t } from "./i18n.js";
import { describeError, say, busy } from "./ui.js";
import qrcode from "/portal/vendor/qrcode.js";

const STEPS = ["identity", "consent", "face", "totp", "key", "done"];
const $ = (id) => document.getElementById(id);
let camera = null;

function show(step) {
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
  if (step === "face") startCamera();
  else stopCamera();
  if (step === "consent") loadConsents();
  if (step === "totp") beginTotp();
  const panel = document.querySelector(`[data-view=enrol] [data-panel=${step}]`);
  panel?.querySelector("input, button")?.focus();
}

async function startCamera() {
  const status = document.querySelector("[data-panel=face] .status");
  camera ??= new Camera($("enrol-video"), $("enrol-guide"));
  try {
    await camera.start();
  } catch (e) {
    say(status, t("cam.denied") + " " + (e.message || ""), "bad");
  }
}

export function stopCamera() {
  camera?.stop();
}

/** Where this owner stands, from the server's own record. */
async function currentStep() {
  if (!signedIn()) return "identity";
  const me = await api("GET", "/api/v1/me");
  const creds = await api("GET", "/api/v1/me/credentials");
  const active = creds.find((c) => c.status === "active");
  if (active) {
    $("done-serial").textContent = active.certificate_serial;
    return "done";
  }
  if (me.consents.length < 2) return "consent";
  if (!me.face_enrolled) return "face";
  if (!me.totp_confirmed) return "totp";
  return "key";
}

export async function enterEnrol() {
  try {
    show(await currentStep());
  } catch (e) {
    show("identity");
  }
}

async function loadConsents() {
  const list = $("consent-list");
  const texts = await api("GET", "/api/v1/consent-texts");
  list.replaceChildren();
  for (const text of texts) {
    // The hash sent back is the one of the words shown here, computed here.
    const digest = hex(await sha256(new TextEncoder().encode(text.text)));
    const box = document.createElement("div");
    box.className = "consent";
    const h = document.createElement("h3");
    h.textContent = t("consent." + text.kind);
    const body = document.createElement("div");
    body.className = "text";
    body.tabIndex = 0;
    body.lang = text.language;
    body.setAttribute("role", "region");
    body.setAttribute("aria-label", h.textContent);
    body.textContent = text.text;
    const meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = `${t("consent.version")} ${text.version} · SHA-256 ${digest}`;
    const label = document.createElement("label");
    label.className = "choice";
    const box2 = document.createElement("input");
    box2.type = "checkbox";
    box2.required = true;
    box2.name = "consent";
    Object.assign(box2.dataset, { kind: text.kind, version: text.version, sha256: digest });
    const span = document.createElement("span");
    span.textContent = t("consent.accept");
    label.append(box2, " ", span);
    box.append(h, body, meta, label);
    list.append(box);
  }
}

let totpSecretShown = false;

async function beginTotp() {
  if (totpSecretShown) return;
  const status = document.querySelector("#totp-form .status");
  try {
    const { provisioning_uri: uri } = await api("POST", "/api/v1/me/totp");
    totpSecretShown = true;
    drawQr($("totp-qr"), uri);
    const secret = new URL(uri).searchParams.get("secret") || "";
    $("totp-secret").textContent = secret.replace(/(.{4})/g, "$1 ").trim();
  } catch (e) {
    say(status, describeError(e), "bad");
  }
}

function drawQr(canvas, text) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  const scale = 6;
  const margin = 4;
  canvas.width = canvas.height = (n + 2 * margin) * scale;
  const g = canvas.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = "#000";
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (qr.isDark(r, c)) g.fillRect((c + margin) * scale, (r + margin) * scale, scale, scale);
    }
  }
}

export function initEnrol() {
  $("identity-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const status = form.querySelector(".status");
    if (!form.reportValidity()) return;
    await busy(form, async () => {
      const data = Object.fromEntries(new FormData(form));
      const s = await api("POST", "/portal/session/register", { body: { kind: "person", ...data } });
      setSession(s.csrf_token);
      show("consent");
    }, status);
  });

  $("consent-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const status = form.querySelector(".status");
    if (!form.reportValidity()) return;
    await busy(form, async () => {
      for (const box of form.querySelectorAll("input[name=consent]")) {
        const { kind, version, sha256: digest } = box.dataset;
        await api("POST", "/api/v1/me/consents", { body: { kind, version, sha256: digest } });
      }
      show("face");
    }, status);
  });

  $("enrol-capture").addEventListener("click", async (ev) => {
    const button = ev.currentTarget;
    const status = button.parentElement.querySelector(".status");
    await busy(button, async () => {
      await startCamera();
      const form = new FormData();
      form.append("image", await camera.still(), "face.jpg");
      say(status, t("enrol.face.checking"));
      try {
        await api("POST", "/api/v1/me/face", { form });
      } catch (e) {
        // The server's quality gate names the reason (too dark, no face, ...).
        if (e instanceof ApiError && e.reason) throw new Error(t("reason." + e.reason, e.reason));
        throw e;
      }
      show("totp");
    }, status);
  });

  $("totp-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const status = form.querySelector(".status");
    if (!form.reportValidity()) return;
    await busy(form, async () => {
      await api("POST", "/api/v1/me/totp/confirm", { body: { otp: $("totp-code").value.trim() } });
      $("totp-secret").textContent = "";
      $("totp-qr").getContext("2d").clearRect(0, 0, 9999, 9999);
      show("key");
    }, status);
  });

  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const status = form.querySelector(".status");
    const pw = $("key-password");
    const pw2 = $("key-password2");
    pw2.setCustomValidity(pw.value === pw2.value ? "" : t("enrol.key.mismatch"));
    if (!form.reportValidity()) return;
    await busy(form, async () => {
      say(status, t("crypto.deriving"));
      let password = pw.value;
      pw.value = pw2.value = "";
      let wrapped;
      try {
        wrapped = await passwordKeyFor(api, password, "credential.create");
      } finally {
        password = null;
      }
      say(status, t("enrol.key.creating"));
      const cred = await api("POST", "/api/v1/me/credentials", {
        body: { algorithm: "ec-p256", password_key: wrapped, otp: $("key-otp").value.trim() },
      });
      $("key-otp").value = "";
      $("done-serial").textContent = cred.certificate_serial;
      show("done");
    }, status);
  });
}
