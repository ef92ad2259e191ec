// Two-person approvals: what other operators asked for and waits for a
// second one. The server decides who may approve (not the requester; the
// role the action needs); the page only offers the buttons.

import { api, me } from "./api.js";
import { t } from "./i18n.js";
import { setupLink } from "./setup.js";
import { $, busy, button, cell, formatTime, say } from "./ui.js";
import { usernames } from "./staff.js";

function details(approval) {
  const p = approval.payload || {};
  switch (approval.action) {
    case "notice.ca_compromise":
      return p.title;
    case "revocation.ca_compromise":
      return `${p.serial} (${p.reason})`;
    case "revocation.bulk":
      return `${(p.serials || []).length}× (${p.reason}): ${(p.serials || []).join(", ")}`;
    case "operator.create":
      return `${p.username} — ${(p.roles || []).map((r) => t("role." + r, r)).join(", ")}`;
    default:
      return JSON.stringify(p);
  }
}

async function decide(approval, verdict, el) {
  const status = $("appr-status");
  $("appr-result").hidden = true;
  await busy(el, async () => {
    const done = await api("POST", `/operator/api/v1/approvals/${approval.approval_id}/${verdict}`);
    say(status, t(verdict === "approve" ? "appr.done" : "appr.rejected"), "ok");
    status.dataset.approval = approval.approval_id;
    if (done.result?.setup_code) {
      $("appr-setup-code").textContent = done.result.setup_code;
      $("appr-setup-link").textContent = setupLink(done.result.setup_code);
      $("appr-result").hidden = false;
    }
    await loadApprovals();
  }, status);
}

export async function loadApprovals() {
  const body = $("appr-table").querySelector("tbody");
  const pending = await api("GET", "/operator/api/v1/approvals");
  body.replaceChildren();
  const self = me()?.operator_id;
  for (const a of pending) {
    const tr = document.createElement("tr");
    tr.dataset.approval = a.approval_id;
    tr.dataset.action = a.action;
    const mine = a.requested_by === self;
    const by = mine ? t("appr.you") : usernames.get(a.requested_by) || a.requested_by;
    tr.append(
      cell(t("act." + a.action, a.action)),
      cell(details(a), "data"),
      cell(by),
      cell(formatTime(a.expires_at), "when"),
    );
    const actions = document.createElement("td");
    if (mine) {
      actions.append(document.createTextNode(t("appr.yours")));
    } else {
      actions.append(
        button(t("appr.approve"), "small approve", (ev) => decide(a, "approve", ev.currentTarget)),
        button(t("appr.reject"), "small secondary reject", (ev) => decide(a, "reject", ev.currentTarget)),
      );
    }
    tr.append(actions);
    body.append(tr);
  }
  $("appr-none").hidden = pending.length > 0;
  $("approvals").dataset.loaded = String(pending.length);
}

export function initApprovals() {
  $("appr-refresh").addEventListener("click", (ev) =>
    busy(ev.currentTarget, loadApprovals, $("appr-status")),
  );
  document.addEventListener("approvalschanged", () => loadApprovals().catch(() => {}));
}

export function leaveApprovals() {
  $("appr-table").querySelector("tbody").replaceChildren();
  $("appr-setup-code").textContent = "";
  $("appr-setup-link").textContent = "";
  $("appr-result").hidden = true;
  say($("appr-status"), "");
  delete $("approvals").dataset.loaded;
}
