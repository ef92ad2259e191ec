// The personal cabinet: the account, every signed document with a fresh
// download of its signature, the certificate and key, and the changes that
// need every factor a signature needs (a face check passed just now, a TOTP
// code and the key password): revoking the certificate, deleting the key,
// deleting the account; and revoking a lost phone (face and key password:
// the phone may be the very factor that is lost). Without a key left,
// deleting the account needs the face check alone.

import { api, setSession } from "./api.js";
import { passwordKeyFor } from "./crypto.js";
import { FaceCheck } from "./facecheck.js";
import { t } from "./i18n.js";
import { busy, flashNext, formatTime, say, takeValue } from "./ui.js";

const $ = (id) => document.getElementById(id);
const ACTIONS = ["revoke", "delete_key", "revoke_device", "delete_account"];
let active = null;
let phones = [];
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
  const bound = await api("GET", "/api/v1/me/devices");
  showDevices(bound.devices);
  offerActions();

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

/** The bound phones, and the ones still active in the revocation's choice. */
function showDevices(devices) {
  const tbody = $("cab-devices").tBodies[0];
  tbody.replaceChildren();
  for (const d of devices) {
    const row = document.createElement("tr");
    cell(row, d.name);
    cell(row, badge(d.status));
    cell(row, formatTime(d.created_at));
    cell(row, d.last_used_at ? formatTime(d.last_used_at) : "—");
    tbody.append(row);
  }
  $("cab-nodevices").hidden = devices.length > 0;
  phones = devices.filter((d) => d.status === "active");
  const select = $("cab-device");
  select.replaceChildren(
    ...phones.map((d) => {
      const option = document.createElement("option");
      option.value = d.device_id;
      option.textContent = `${d.name} (${formatTime(d.created_at)})`;
      return option;
    }),
  );
}

/** The changes this account allows now; the first one is chosen. */
function offerActions() {
  const allowed = {
    revoke: Boolean(active && active.certificate_status === "good"),
    delete_key: Boolean(active),
    revoke_device: Boolean(active && phones.length),
    delete_account: true,
  };
  for (const action of ACTIONS) {
    const radio = document.querySelector(`input[name=cab-action][value=${action}]`);
    radio.disabled = !allowed[action];
    radio.closest("label").hidden = !allowed[action];
  }
  const chosen = document.querySelector("input[name=cab-action]:checked");
  if (!chosen || chosen.disabled) {
    document.querySelector("input[name=cab-action]:not(:disabled)").checked = true;
  }
  $("cab-confirm").checked = false;
  onActionChange();
}

const chosenAction = () => document.querySelector("input[name=cab-action]:checked").value;

/** A key left means the code and the password too; the form shows what is needed. */
function onActionChange() {
  const action = chosenAction();
  const keyFactors = Boolean(active);
  $("cab-factors").hidden = !keyFactors;
  $("cab-face-alone").hidden = keyFactors;
  for (const input of $("cab-factors").querySelectorAll("input")) input.disabled = !keyFactors;
  // A lost phone is revoked with the face and the password alone.
  const otp = keyFactors && action !== "revoke_device";
  $("cab-otp-wrap").hidden = !otp;
  $("cab-otp").disabled = !otp;
  $("cab-reason-wrap").hidden = action !== "revoke";
  $("cab-device-wrap").hidden = action !== "revoke_device";
  document.querySelectorAll("#cab-manage-form [data-warning]").forEach((p) => {
    p.hidden = p.dataset.warning !== action;
  });
  $("cab-submit").textContent = t(`cab.submit.${action}`);
}

const CONFIRM = {
  revoke: "cab.revoke.confirm",
  delete_key: "cab.delete.confirm",
  revoke_device: "cab.device.confirm",
  delete_account: "cab.erase.confirm",
};

const DONE = {
  revoke: "cab.revoked",
  delete_key: "cab.deleted",
  revoke_device: "cab.device.revoked",
};

async function onManage(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = $("cab-submit-status"); // the face check has a status of its own
  const action = chosenAction();
  if (!form.reportValidity()) return;
  if (!face.passed) return say(status, t("sign.noface"), "bad");
  if (!window.confirm(t(CONFIRM[action]))) return;
  await busy(form, async () => {
    const factors = {};
    if (active) {
      say(status, t("crypto.deriving"));
      let password = takeValue($("cab-password"));
      try {
        factors.password_key = await passwordKeyFor(api, password, "authorize");
      } finally {
        password = null;
      }
      if (action !== "revoke_device") factors.otp = takeValue($("cab-otp")).trim();
    }
    factors.face_challenge_id = face.take(); // spent by this attempt, whatever its outcome
    say(status, t("sign.authorising"));
    const id = active && encodeURIComponent(active.credential_id);
    if (action === "revoke") {
      await api("POST", `/api/v1/me/credentials/${id}/revoke`, {
        body: { reason: $("cab-reason").value, ...factors },
      });
    } else if (action === "delete_key") {
      await api("DELETE", `/api/v1/me/credentials/${id}`, { body: factors });
    } else if (action === "revoke_device") {
      const device = encodeURIComponent($("cab-device").value);
      await api("DELETE", `/api/v1/me/devices/${device}`, { body: factors });
    } else {
      await api("DELETE", "/api/v1/me", { body: factors });
      await leave();
      return;
    }
    face.stop();
    say(status, "");
    await enterCabinet();
    say($("cab-manage-status"), t(DONE[action]), "ok");
  }, status);
}

/** The account is gone: end the cookie too, and say so on the home page. */
async function leave() {
  face.stop();
  try {
    await api("POST", "/portal/session/logout");
  } catch {
    /* the session died with the account */
  }
  setSession(null);
  flashNext(t("cab.erased"), "ok");
  location.hash = "#/";
}

export function stopCamera() {
  face?.stop();
}

export function initCabinet() {
  face = new FaceCheck({
    video: $("cab-video"),
    guide: $("cab-guide"),
    banner: $("cab-face-action"),
    status: $("cab-face-status"),
    button: $("cab-face-start"),
  });
  for (const radio of document.querySelectorAll("input[name=cab-action]")) {
    radio.addEventListener("change", onActionChange);
  }
  document.addEventListener("languagechange", () => {
    if (document.querySelector("input[name=cab-action]:checked")) onActionChange();
  });
  $("cab-manage-form").addEventListener("submit", onManage);
}
