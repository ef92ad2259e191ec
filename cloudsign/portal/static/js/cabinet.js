// The personal cabinet: account, certificate and key (revoke / delete), and
// every signed document with a fresh download of its signature.

import { api } from "./api.js";
import { passwordKeyFor } from "./crypto.js";
import { FaceCheck } from "./facecheck.js";
import { t } from "./i18n.js";
import { busy, formatTime, say } from "./ui.js";

const $ = (id) => document.getElementById(id);
let active = null;
let face = null;

function cell(row, content, cls) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "—";
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

function badge(value) {
  const span = document.createElement("span");
  span.className = "badge " + value;
  span.textContent = t("status." + value, value);
  return span;
}

function code(text) {
  const c = document.createElement("code");
  c.textContent = text;
  return c;
}

export async function enterCabinet() {
  say($("cab-manage-status"), "");
  const me = await api("GET", "/api/v1/me");
  $("cab-name").textContent = me.full_name;
  $("cab-iin").textContent = me.iin;
  $("cab-email").textContent = me.email;

  const creds = await api("GET", "/api/v1/me/credentials");
  active = creds.find((c) => c.status === "active") || null;
  const tbody = $("cab-creds").tBodies[0];
  tbody.replaceChildren();
  for (const c of creds) {
    const row = document.createElement("tr");
    cell(row, code(c.certificate_serial || "—"));
    const st = cell(row, badge(c.certificate_status || c.status));
    if (c.status !== "active") st.append(" ", badge(c.status));
    cell(row, c.algorithm);
    cell(row, formatTime(c.created_at));
    cell(row, formatTime(c.certificate_not_after));
    tbody.append(row);
  }
  $("cab-revoke-form").hidden = !active || active.certificate_status !== "good";
  $("cab-delete-form").hidden = !active;

  const docs = await api("GET", "/api/v1/me/documents");
  const dbody = $("cab-docs").tBodies[0];
  dbody.replaceChildren();
  for (const d of docs) {
    const row = document.createElement("tr");
    cell(row, d.name || d.signature_id);
    cell(row, formatTime(d.signed_at));
    cell(row, d.format === "pades" ? "PAdES (PDF)" : d.format === "cades" ? "CAdES (.p7s)" : d.format);
    cell(row, code(d.document_hash));
    const link = document.createElement("a");
    link.href = `/api/v1/me/documents/${encodeURIComponent(d.signature_id)}`;
    link.setAttribute("download", "");
    link.textContent = t("cab.download");
    link.setAttribute("aria-label", `${t("cab.download")}: ${d.name || d.signature_id}`);
    cell(row, link);
    dbody.append(row);
  }
  $("cab-nodocs").hidden = docs.length > 0;
}

async function onRevoke(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!active || !form.reportValidity()) return;
  if (!face.passed) return say(status, t("sign.noface"), "bad");
  if (!window.confirm(t("cab.revoke.confirm"))) return;
  await busy(form, async () => {
    say(status, t("crypto.deriving"));
    const pw = $("cab-revoke-password");
    let password = pw.value;
    pw.value = "";
    let wrapped;
    try {
      wrapped = await passwordKeyFor(api, password, "authorize");
    } finally {
      password = null;
    }
    const otp = $("cab-revoke-otp").value.trim();
    $("cab-revoke-otp").value = "";
    const id = encodeURIComponent(active.credential_id);
    await api("POST", `/api/v1/me/credentials/${id}/revoke`, {
      body: {
        reason: $("cab-reason").value,
        password_key: wrapped,
        otp,
        face_challenge_id: face.take(),
      },
    });
    $("cab-revoke-confirm").checked = false;
    face.stop();
    say(status, "");
    await enterCabinet();
    say($("cab-manage-status"), t("cab.revoked"), "ok");
  }, status);
}

async function onDelete(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!active || !form.reportValidity()) return;
  if (!window.confirm(t("cab.delete.confirm"))) return;
  await busy(form, async () => {
    const otp = $("cab-delete-otp").value.trim();
    $("cab-delete-otp").value = "";
    const id = encodeURIComponent(active.credential_id);
    await api("DELETE", `/api/v1/me/credentials/${id}`, { body: { otp } });
    $("cab-delete-confirm").checked = false;
    say(status, "");
    await enterCabinet();
    say($("cab-manage-status"), t("cab.deleted"), "ok");
  }, status);
}

export function stopCamera() {
  face?.stop();
}

export function initCabinet() {
  face = new FaceCheck({
    video: $("cab-video"),
    guide: $("cab-guide"),
    banner: $("cab-action"),
    status: $("cab-face-status"),
    button: $("cab-face-start"),
  });
  $("cab-revoke-form").addEventListener("submit", onRevoke);
  $("cab-delete-form").addEventListener("submit", onDelete);
}
