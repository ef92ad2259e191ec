// The personal cabinet: account, certificate and key (revoke / delete), and
// every signed document with a fresh download of its signature.

import { api, ApiError } from "./api.js";
import { t } from "./i18n.js";
import { busy, formatTime, say } from "./ui.js";

const $ = (id) => document.getElementById(id);
let active = null;

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
  $("cab-manage").hidden = !active;

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

async function onManage(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  const action = ev.submitter?.value;
  if (!active || !form.reportValidity()) return;
  const question = action === "revoke" ? t("cab.revoke.confirm") : t("cab.delete.confirm");
  if (!window.confirm(question)) return;
  const otp = $("cab-otp").value.trim();
  const id = encodeURIComponent(active.credential_id);
  await busy(form, async () => {
    try {
      if (action === "revoke") {
        await api("POST", `/api/v1/me/credentials/${id}/revoke`, {
          body: { otp, reason: "owner-request" },
        });
      } else {
        await api("DELETE", `/api/v1/me/credentials/${id}`, { body: { otp } });
      }
    } catch (e) {
      if (action === "revoke" && e instanceof ApiError && [404, 405].includes(e.status)) {
        throw new Error(t("cab.revoke.unavailable"));
      }
      throw e;
    }
    $("cab-otp").value = "";
    $("cab-confirm").checked = false;
    await enterCabinet();
    say(status, action === "revoke" ? t("cab.revoked") : t("cab.deleted"), "ok");
  }, status);
}

export function initCabinet() {
  $("cab-manage").addEventListener("submit", onManage);
}
