// Certificate status work: revoking one certificate or several, and
// publishing compromise notices. A CA-compromise ground, a CA-compromise
// notice and a bulk revocation above the centre's threshold answer 202: the
// page says they wait for a second operator, who decides under Approvals.

import { send } from "./api.js";
import { t } from "./i18n.js";
import { $, busy, lines, reportPending, say } from "./ui.js";

// The CA's grounds for revocation (cloudsign/status/reasons.py), as operators pick them.
const GROUNDS = [
  "key-compromise",
  "affiliation-changed",
  "superseded",
  "court-decision",
  "owner-request",
  "ca-termination",
  "ca-compromise",
];

function fillReasons() {
  for (const select of document.querySelectorAll("select.reasons")) {
    for (const ground of GROUNDS) {
      const option = document.createElement("option");
      option.value = ground;
      option.dataset.i18n = "ground." + ground;
      option.textContent = t("ground." + ground);
      select.append(option);
    }
  }
}

function optional(el) {
  const value = el.value.trim();
  return value ? value : undefined;
}

async function revokeOne(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!form.reportValidity()) return;
  await busy(form, async () => {
    const result = await send("POST", "/operator/api/v1/revocations", {
      body: {
        serial: $("rev-serial").value.trim(),
        reason: $("rev-reason").value,
        reference: optional($("rev-reference")),
      },
    });
    if (!reportPending(result, status)) {
      say(status, t("rev.done", null, { serial: result.body.serial }), "ok");
    }
    form.reset();
  }, status);
}

async function revokeMany(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!form.reportValidity()) return;
  await busy(form, async () => {
    const result = await send("POST", "/operator/api/v1/revocations/bulk", {
      body: {
        serials: lines($("bulk-serials")),
        reason: $("bulk-reason").value,
        reference: optional($("bulk-reference")),
      },
    });
    if (!reportPending(result, status)) {
      say(status, t("rev.bulk.done", null, { count: result.body.revoked.length }), "ok");
    }
    form.reset();
  }, status);
}

async function publish(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!form.reportValidity()) return;
  await busy(form, async () => {
    const result = await send("POST", "/operator/api/v1/notices", {
      body: {
        title: $("notice-title").value.trim(),
        summary: $("notice-summary").value.trim(),
        measures: $("notice-measures").value.trim(),
        serials: lines($("notice-serials")),
        ca_compromise: $("notice-ca").checked,
      },
    });
    if (!reportPending(result, status)) say(status, t("notice.done"), "ok");
    form.reset();
  }, status);
}

export function initStatus() {
  fillReasons();
  $("rev-form").addEventListener("submit", revokeOne);
  $("bulk-form").addEventListener("submit", revokeMany);
  $("notice-form").addEventListener("submit", publish);
}

export function leaveStatus() {
  for (const id of ["rev-form", "bulk-form", "notice-form"]) {
    const form = $(id);
    form.reset();
    say(form.querySelector(".status"), "");
  }
}
