// The auditor's views (read only): the operator action log, newest first
// (`?before=` pages backwards), and the signed documents of one owner
// (without document names).

import { api, hasRole } from "./api.js";
import { t } from "./i18n.js";
import { $, busy, cell, formatTime, say } from "./ui.js";

let oldest = null;

/** Who acted: the creating officer of a new operator, the decider of a
 * revocation or notice ("operator:requester+approver"), else the operator. */
function who(type, data) {
  if (type === "operator.create") return data.by || "";
  if (type === "cert.revoke" || type === "notice.publish") return data.actor || "";
  return data.operator || "";
}

function rest(type, data) {
  const others = { ...data };
  if (type === "operator.create") delete others.by;
  else if (type === "cert.revoke" || type === "notice.publish") delete others.actor;
  else delete others.operator;
  return JSON.stringify(others);
}

export async function loadActions(older = false) {
  if (!hasRole("auditor", "security_officer")) return;
  const body = $("audit-table").querySelector("tbody");
  const path = "/operator/api/v1/audit/operator-actions" + (older && oldest ? `?before=${oldest}` : "");
  const rows = await api("GET", path);
  if (!older) body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.dataset.seq = String(row.seq);
    tr.dataset.type = row.type;
    tr.append(
      cell(String(row.seq)),
      cell(formatTime(row.at), "when"),
      cell(row.type),
      cell(who(row.type, row.data)),
      cell(rest(row.type, row.data), "data"),
    );
    body.append(tr);
  }
  if (rows.length) oldest = rows[rows.length - 1].seq;
  $("audit-older").hidden = rows.length === 0;
}

async function documents(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!form.reportValidity()) return;
  const body = $("docs-table").querySelector("tbody");
  await busy(form, async () => {
    const owner = encodeURIComponent($("docs-owner").value.trim());
    const docs = await api("GET", `/operator/api/v1/audit/documents?owner_id=${owner}`);
    body.replaceChildren();
    for (const d of docs) {
      const tr = document.createElement("tr");
      tr.append(
        cell(formatTime(d.signed_at), "when"),
        cell(d.format),
        cell(d.certificate_serial, "data"),
        cell(`${d.hash_algorithm}:${d.document_hash}`, "data"),
      );
      body.append(tr);
    }
    say(status, docs.length ? t("audit.count", null, { count: docs.length }) : t("audit.nodocs"), "ok");
  }, status);
}

export function initAudit() {
  const status = $("audit-status");
  $("audit-refresh").addEventListener("click", (ev) => busy(ev.currentTarget, () => loadActions(false), status));
  $("audit-older").addEventListener("click", (ev) => busy(ev.currentTarget, () => loadActions(true), status));
  $("docs-form").addEventListener("submit", documents);
}

export function leaveAudit() {
  oldest = null;
  $("audit-table").querySelector("tbody").replaceChildren();
  $("docs-table").querySelector("tbody").replaceChildren();
  $("docs-form").reset();
  say($("docs-form").querySelector(".status"), "");
  say($("audit-status"), "");
}
