// Operator management: the list (security officers and auditors), a new
// operator with their roles (security officers; the one-time setup code is
// shown once, or, for a new security officer, the request waits for a
// second officer), with the link to the new operator's set-up page, and
// disabling an operator.

import { api, hasRole, me, send } from "./api.js";
import { t } from "./i18n.js";
import { setupLink } from "./setup.js";
import { $, badge, busy, button, cell, reportPending, say } from "./ui.js";

/** Operator ids -> usernames, for the approvals list. */
export const usernames = new Map();

export async function loadOperators() {
  const body = $("ops-table").querySelector("tbody");
  const status = $("ops-status");
  if (!hasRole("security_officer", "auditor")) return;
  const operators = await api("GET", "/operator/api/v1/operators");
  body.replaceChildren();
  for (const op of operators) {
    usernames.set(op.operator_id, op.username);
    const tr = document.createElement("tr");
    tr.dataset.username = op.username;
    const you = op.operator_id === me()?.operator_id;
    tr.append(
      cell(op.username + (you ? " " + t("ops.you") : "")),
      cell(op.display_name),
      cell(op.roles.map((r) => t("role." + r, r)).join(", ")),
    );
    const state = document.createElement("td");
    state.append(badge(t("status." + op.status, op.status), op.status));
    const actions = document.createElement("td");
    if (hasRole("security_officer") && !you && op.status !== "disabled") {
      actions.append(
        button(t("ops.disable"), "small danger disable", (ev) =>
          busy(ev.currentTarget, async () => {
            await api("POST", `/operator/api/v1/operators/${op.operator_id}/disable`);
            say(status, t("ops.disabled", null, { username: op.username }), "ok");
            await loadOperators();
          }, status),
        ),
      );
    }
    tr.append(state, actions);
    body.append(tr);
  }
}

async function create(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  $("ops-setup").hidden = true;
  if (!form.reportValidity()) return;
  const roles = [...form.querySelectorAll("input[name=role]:checked")].map((b) => b.value);
  if (roles.length === 0) {
    say(status, t("ops.noroles"), "bad");
    return;
  }
  await busy(form, async () => {
    const result = await send("POST", "/operator/api/v1/operators", {
      body: { username: $("ops-username").value.trim(), display_name: $("ops-display").value.trim(), roles },
    });
    form.reset();
    if (reportPending(result, status)) return;
    say(status, t("ops.created", null, { username: result.body.operator.username }), "ok");
    $("ops-setup-code").textContent = result.body.setup_code;
    $("ops-setup-link").textContent = setupLink(result.body.setup_code);
    $("ops-setup").hidden = false;
    await loadOperators();
  }, status);
}

export function initStaff() {
  $("ops-form").addEventListener("submit", create);
}

export function leaveStaff() {
  usernames.clear();
  $("ops-table").querySelector("tbody").replaceChildren();
  $("ops-setup-code").textContent = "";
  $("ops-setup-link").textContent = "";
  $("ops-setup").hidden = true;
  $("ops-form").reset();
  say($("ops-form").querySelector(".status"), "");
  say($("ops-status"), "");
}
