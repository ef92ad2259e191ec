// Signing: hash the file here, pass the face check, then authorise with the
// TOTP code and the wrapped key password, and sign. For CAdES only the hash
// leaves this computer; PAdES needs the PDF itself.

import { api } from "./api.js";
import { FaceCheck } from "./facecheck.js";
import { b64encode, hex, passwordKeyFor, sha256 } from "./crypto.js";
import { t } from "./i18n.js";
import { busy, describeError, download, formatBytes, say } from "./ui.js";

const $ = (id) => document.getElementById(id);
const MAX_PDF_BYTES = 12 << 20; // base64 in a 16 MiB JSON body

let doc = null; // { name, bytes, digest }
let face = null;

function isPdf(file) {
  return file.type === "application/pdf" || file.name.toLowerCase().endsWith(".pdf");
}

async function onFile(ev) {
  const file = ev.target.files[0];
  doc = null;
  $("sign-info").hidden = true;
  if (!file) return;
  const bytes = new Uint8Array(await file.arrayBuffer());
  doc = { name: file.name, bytes, digest: await sha256(bytes) };
  $("sign-name").textContent = file.name;
  $("sign-size").textContent = formatBytes(file.size);
  $("sign-hash").textContent = hex(doc.digest);
  $("sign-info").hidden = false;
  const pades = $("fmt-pades");
  pades.disabled = !isPdf(file) || file.size > MAX_PDF_BYTES;
  pades.checked = !pades.disabled;
  if (pades.disabled) document.querySelector("input[name=format][value=cades]").checked = true;
}

function filenameFrom(resp, fallback) {
  const m = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
  return m ? m[1] : fallback;
}

async function onSign(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  $("sign-result").hidden = true;
  if (!doc) return say(status, t("sign.nofile"), "bad");
  if (!face.passed) return say(status, t("sign.noface"), "bad");
  if (!form.reportValidity()) return;
  const format = document.querySelector("input[name=format]:checked").value;
  await busy(form, async () => {
    const cred = usable(await api("GET", "/api/v1/me/credentials"));
    if (!cred) throw new Error(t("sign.nocred"));
    say(status, t("crypto.deriving"));
    const pw = $("sign-password");
    let password = pw.value;
    pw.value = "";
    let wrapped;
    try {
      wrapped = await passwordKeyFor(api, password, "authorize");
    } finally {
      password = null;
    }
    const otp = $("sign-otp").value.trim();
    $("sign-otp").value = "";
    const check = face.take(); // spent by this attempt, whatever its outcome
    say(status, t("sign.authorising"));
    const auth = await api("POST", `/api/v1/me/credentials/${cred.credential_id}/authorize`, {
      body: {
        hashes: [b64encode(doc.digest)],
        hash_algorithm: "sha256",
        password_key: wrapped,
        otp,
        face_challenge_id: check,
        description: doc.name.slice(0, 200),
      },
    });
    say(status, t("sign.signing"));
    const body = { SAD: auth.SAD, format, name: doc.name };
    if (format === "pades") body.document = b64encode(doc.bytes);
    else body.document_hash = b64encode(doc.digest);
    const resp = await api("POST", `/api/v1/me/credentials/${cred.credential_id}/sign-document`, {
      body,
      raw: true,
    });
    const blob = await resp.blob();
    const fallback = format === "pades" ? "signed.pdf" : doc.name + ".p7s";
    $("sign-result").hidden = false;
    download(blob, filenameFrom(resp, fallback), $("sign-download"));
    say(status, t("sign.done"), "ok");
  }, status);
}

export function stopCamera() {
  face?.stop();
}

/** The key that can sign: active, with a good certificate. */
const usable = (creds) => creds.find((c) => c.status === "active" && c.certificate_status === "good");

/** Say at once when nothing can be signed (no key, or its certificate revoked). */
export async function enterSign() {
  face.refresh();
  const creds = await api("GET", "/api/v1/me/credentials");
  const status = document.querySelector("#sign-form .status");
  const can = Boolean(usable(creds));
  $("sign-submit").disabled = !can;
  $("face-start").disabled = !can;
  if (!can) {
    const revoked = creds.some((c) => c.status === "active");
    say(status, t(revoked ? "sign.revoked" : "sign.nocred"), "bad");
  } else if (status.classList.contains("bad")) {
    say(status, "");
  }
}

export function initSign() {
  face = new FaceCheck({
    video: $("sign-video"),
    guide: $("sign-guide"),
    banner: $("sign-action"),
    status: $("face-status"),
    button: $("face-start"),
  });
  const status = document.querySelector("#sign-form .status");
  $("sign-file").addEventListener("change", (ev) =>
    onFile(ev).catch((e) => say(status, describeError(e), "bad")),
  );
  $("sign-form").addEventListener("submit", onSign);
}
