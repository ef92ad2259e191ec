// Signing a file picked on the phone: its SHA-256 computed here, a face
// check, the key password and this phone's assertion (in place of a TOTP
// code) authorise exactly that hash; then the signature is made. A PDF is
// signed inside (PAdES: the PDF is uploaded); anything else gets a detached
// .p7s (CAdES: only the hash leaves the phone).

import { api } from "./api.js";
import { FaceCheck } from "./face.js";
import { deviceProof, passwordKey } from "./factors.js";
import { t } from "./i18n.js";
import { $, busy, describeError, download, formatBytes, say, takeValue } from "./ui.js";
import { b64encode, hex, sha256 } from "/portal/static/js/crypto.js";

const MAX_PDF_BYTES = 12 << 20; // base64 in a 16 MiB JSON body

let doc = null; // { name, bytes, digest, format }
let face = null;

function isPdf(file, bytes) {
  const magic = new TextDecoder().decode(bytes.subarray(0, 5));
  return magic === "%PDF-" && (file.type === "application/pdf" || file.name.toLowerCase().endsWith(".pdf"));
}

async function onFile(ev) {
  const file = ev.target.files[0];
  doc = null;
  $("sign-info").hidden = true;
  $("sign-format").hidden = true;
  $("sign-result").hidden = true;
  if (!file) return;
  const bytes = new Uint8Array(await file.arrayBuffer());
  const format = isPdf(file, bytes) && file.size <= MAX_PDF_BYTES ? "pades" : "cades";
  doc = { name: file.name, bytes, digest: await sha256(bytes), format };
  $("sign-name").textContent = file.name;
  $("sign-size").textContent = formatBytes(file.size);
  $("sign-hash").textContent = hex(doc.digest);
  $("sign-format").textContent = t(format === "pades" ? "app.sign.pades" : "app.sign.cades");
  $("sign-format").dataset.format = format;
  $("sign-info").hidden = false;
  $("sign-format").hidden = false;
}

function filenameFrom(resp, fallback) {
  const header = resp.headers.get("Content-Disposition") || "";
  const exact = /filename\*=UTF-8''([^;]+)/.exec(header);
  if (exact) {
    try {
      return decodeURIComponent(exact[1]);
    } catch {
      /* the plain name below */
    }
  }
  const plain = /filename="([^"]+)"/.exec(header);
  return plain ? plain[1] : fallback;
}

/** The key that can sign: active, with a good certificate. */
const usable = (creds) => creds.find((c) => c.status === "active" && c.certificate_status === "good");

async function onSign(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(":scope > .status");
  $("sign-result").hidden = true;
  if (!doc) return say(status, t("sign.nofile"), "bad");
  if (!face.passed) return say(status, t("sign.noface"), "bad");
  if (!form.reportValidity()) return;
  const file = doc;
  const ok = await busy(form, async () => {
    const cred = usable(await api("GET", "/api/v1/me/credentials"));
    if (!cred) throw new Error(t("sign.nocred"));
    say(status, t("app.crypto.deriving"));
    let password = takeValue($("sign-password"));
    let wrapped;
    try {
      wrapped = await passwordKey(password, "authorize");
    } finally {
      password = null;
    }
    const check = face.take(); // spent by this attempt, whatever its outcome
    say(status, t("app.phone.confirm"));
    const device = await deviceProof("authorize");
    say(status, t("sign.authorising"));
    const auth = await api("POST", `/api/v1/me/credentials/${cred.credential_id}/authorize`, {
      body: {
        hashes: [b64encode(file.digest)],
        hash_algorithm: "sha256",
        password_key: wrapped,
        device,
        face_challenge_id: check,
        description: file.name.slice(0, 200),
      },
    });
    say(status, t("sign.signing"));
    const body = { SAD: auth.SAD, format: file.format, name: file.name };
    if (file.format === "pades") body.document = b64encode(file.bytes);
    else body.document_hash = b64encode(file.digest);
    const resp = await api("POST", `/api/v1/me/credentials/${cred.credential_id}/sign-document`, {
      body,
      raw: true,
    });
    const blob = await resp.blob();
    const fallback = file.format === "pades" ? "signed.pdf" : file.name + ".p7s";
    $("sign-result").hidden = false;
    download(blob, filenameFrom(resp, fallback), $("sign-download"));
    say(status, t("app.sign.done"), "ok");
  }, status);
  if (!ok) status.append(" ", t("enrol.key.retry"));
}

/** Say at once when nothing can be signed (no key, or its certificate revoked). */
export async function enterSign() {
  const creds = await api("GET", "/api/v1/me/credentials");
  const status = $("sign-form").querySelector(":scope > .status");
  const can = Boolean(usable(creds));
  $("sign-submit").disabled = !can;
  face.button.disabled = !can;
  if (!can) {
    const revoked = creds.some((c) => c.status === "active");
    say(status, t(revoked ? "sign.revoked" : "sign.nocred"), "bad");
  } else if (status.classList.contains("bad")) {
    say(status, "");
  }
}

export function stopSign() {
  face?.stop();
}

export function initSign() {
  face = new FaceCheck($("sign-face"));
  const status = $("sign-form").querySelector(":scope > .status");
  $("sign-file").addEventListener("change", (ev) =>
    onFile(ev).catch((e) => say(status, describeError(e), "bad")),
  );
  $("sign-form").addEventListener("submit", onSign);
}
