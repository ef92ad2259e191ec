// One signing request on the phone: what is to be signed, checked here before
// anything is approved. Every document sent whole is fetched and its SHA-256
// compared with the hash the request commits to; the verification code is
// computed here from the commitment over the request id and those hashes
// (approval.js), and shown for the citizen to compare with the requesting
// screen. Approving takes a face check, the key password and this phone's
// assertion over the approval challenge, after the app has checked that the
// challenge is the one it computes from the commitment, the code and the
// service's nonce: a service that showed one thing and asked for another
// gets no assertion.

import { api } from "./api.js";
import { approvalChallenge, commitment, sameBytes, verificationCode } from "./approval.js";
import { FaceCheck } from "./face.js";
import { passwordKey } from "./factors.js";
import { preview } from "./preview.js";
import { t, tf } from "./i18n.js";
import { $, busy, download, formatBytes, formatTime, say, takeValue } from "./ui.js";
import { assert, unb64url } from "./webauthn.js";
import { b64decode, hex, sha256 } from "/portal/static/js/crypto.js";

let face = null;
// The request on screen and what the app computed for it.
let shown = null; // { id, commitment, code, approvable }

function reset() {
  shown = null;
  for (const id of ["req-from", "req-expires", "req-text", "req-code"]) $(id).textContent = "";
  $("req-docs").replaceChildren();
  $("req-refused").hidden = true;
  $("approve-form").hidden = true;
  say($("req-state"), "");
  say($("approve-form").querySelector(":scope > .status"), "");
  face.reset();
}

function refuse(text) {
  const box = $("req-refused");
  box.textContent = box.hidden ? text : `${box.textContent} ${text}`;
  box.hidden = false;
}

/** A document's row; for one sent whole, its bytes are fetched and hashed here. */
async function checkDocument(requestId, doc, expected) {
  const li = document.createElement("li");
  li.dataset.position = String(doc.position);
  const name = document.createElement("strong");
  name.textContent = doc.name;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = [doc.format.toUpperCase(), doc.size === null ? null : formatBytes(doc.size)]
    .filter(Boolean)
    .join(" · ");
  const hash = document.createElement("code");
  hash.className = "hash";
  hash.textContent = hex(expected);
  const verdict = document.createElement("span");
  verdict.className = "verdict";
  li.append(name, meta, hash, verdict);
  $("req-docs").append(li);
  if (doc.size === null) {
    verdict.textContent = t("app.req.doc.hashonly");
    li.classList.add("hash-only");
    return true;
  }
  verdict.textContent = t("app.req.doc.checking");
  const resp = await api("GET", `/api/v1/device/requests/${requestId}/documents/${doc.position}`, {
    raw: true,
  });
  const bytes = new Uint8Array(await resp.arrayBuffer());
  const ok = sameBytes(await sha256(bytes), expected);
  verdict.textContent = t(ok ? "app.req.doc.ok" : "app.req.doc.bad");
  li.classList.add(ok ? "ok" : "bad");
  if (ok) {
    const save = document.createElement("a");
    save.className = "button secondary save";
    save.href = "#";
    save.textContent = t("app.req.doc.save");
    const type = doc.format === "pades" ? "application/pdf" : "application/octet-stream";
    save.addEventListener("click", (ev) => {
      ev.preventDefault();
      download(new Blob([bytes], { type }), doc.name, save);
    });
    li.append(save);
    const view = await preview(bytes, Math.max(200, Math.min(li.clientWidth || 320, 480)));
    if (view) li.append(view);
  }
  return ok;
}

export async function enterRequest(requestId) {
  reset();
  const req = await api("GET", `/api/v1/device/requests/${encodeURIComponent(requestId)}`);
  $("req-from").textContent = req.requester;
  $("req-expires").textContent = formatTime(req.expires_at);
  $("req-text").textContent = req.display_text;
  const docs = [...req.documents].sort((a, b) => a.position - b.position);
  const hashes = docs.map((d) => b64decode(d.hash));
  let approvable = req.hash_algorithm === "sha256" && docs.length > 0;
  for (const [i, doc] of docs.entries()) {
    if (!(await checkDocument(req.request_id, doc, hashes[i]))) approvable = false;
  }
  const committed = await commitment(req.request_id, req.hash_algorithm, hashes);
  const code = await verificationCode(committed);
  $("req-code").textContent = code;
  if (code !== req.verification_code) {
    approvable = false;
    refuse(t("app.req.code.mismatch"));
  }
  if (!approvable) refuse(t("app.req.refused"));
  shown = { id: req.request_id, commitment: committed, code, approvable };
  if (req.status !== "pending") {
    say($("req-state"), tf("app.req.status", { status: t("app.status." + req.status, req.status) }));
    return;
  }
  $("approve-form").hidden = false;
  $("req-approve").disabled = !approvable;
}

async function onApprove(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(":scope > .status");
  if (!shown?.approvable) return say(status, t("app.req.refused"), "bad");
  if (!face.passed) return say(status, t("sign.noface"), "bad");
  if (!form.reportValidity()) return;
  const req = shown;
  const ok = await busy(form, async () => {
    say(status, t("app.crypto.deriving"));
    let password = takeValue($("req-password"));
    let wrapped;
    try {
      wrapped = await passwordKey(password, "authorize");
    } finally {
      password = null;
    }
    const check = face.take(); // spent by this attempt, whatever its outcome
    const issued = await api("POST", `/api/v1/device/requests/${req.id}/challenge`);
    const expected = await approvalChallenge(req.commitment, req.code, unb64url(issued.nonce));
    if (!sameBytes(unb64url(issued.options.challenge), expected)) {
      throw new Error(t("app.req.challenge.bad"));
    }
    say(status, t("app.phone.confirm"));
    const credential = await assert(issued.options);
    say(status, t("sign.signing"));
    const done = await api("POST", `/api/v1/device/requests/${req.id}/approval`, {
      body: {
        verification_code: req.code,
        device: { challenge_id: issued.challenge_id, credential },
        face_challenge_id: check,
        password_key: wrapped,
      },
    });
    form.hidden = true;
    say($("req-state"), tf("app.req.approved", { n: done.documents.length }), "ok");
  }, status);
  if (!ok) status.append(" ", t("enrol.key.retry"));
}

async function onDecline() {
  const form = $("approve-form");
  const status = form.querySelector(":scope > .status");
  if (!shown) return;
  await busy(form, async () => {
    await api("POST", `/api/v1/device/requests/${shown.id}/decline`);
    form.hidden = true;
    say($("req-state"), t("app.req.declined"), "ok");
  }, status);
}

export function stopRequest() {
  face?.stop();
}

export function initRequest() {
  face = new FaceCheck($("req-face"));
  $("approve-form").addEventListener("submit", onApprove);
  $("req-decline").addEventListener("click", onDecline);
}
