// The phones bound to the account, and revoking one (a lost phone): a face
// check and the key password, no possession factor (the phone may be the
// very factor that is lost). The owner's pending requests end at once.

import { api } from "./api.js";
import { FaceCheck } from "./face.js";
import { passwordKey } from "./factors.js";
import { t } from "./i18n.js";
import { $, busy, formatTime, say, takeValue } from "./ui.js";
import { forgetDevice, thisDevice } from "./webauthn.js";

let face = null;
let selected = null; // the device to revoke

function row(device) {
  const mine = thisDevice()?.device_id === device.device_id;
  const li = document.createElement("li");
  li.className = `device ${device.status}`;
  li.dataset.device = device.device_id;
  const name = document.createElement("strong");
  name.textContent = device.name;
  li.append(name);
  if (mine) {
    const badge = document.createElement("span");
    badge.className = "badge this";
    badge.textContent = t("app.dev.this");
    li.append(" ", badge);
  }
  const state = document.createElement("span");
  state.className = `badge ${device.status}`;
  state.textContent = t("app.dev." + device.status, device.status);
  li.append(" ", state);
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = `${t("app.dev.created")}: ${formatTime(device.created_at)} · ${t("app.dev.used")}: ${
    device.last_used_at ? formatTime(device.last_used_at) : t("app.dev.never")
  }`;
  li.append(meta);
  if (device.status === "active") {
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.className = "secondary revoke";
    revoke.textContent = t("app.dev.revoke");
    revoke.addEventListener("click", () => choose(device));
    li.append(revoke);
  }
  return li;
}

async function load() {
  const { devices } = await api("GET", "/api/v1/me/devices");
  $("dev-list").replaceChildren(...devices.map(row));
}

function choose(device) {
  selected = device;
  $("rev-name").textContent = device.name;
  $("revoke-form").hidden = false;
  say($("revoke-form").querySelector(":scope > .status"), "");
  $("revoke-form").scrollIntoView({ block: "nearest" });
}

function cancel() {
  selected = null;
  face.stop();
  face.reset();
  $("revoke-form").hidden = true;
}

async function onRevoke(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(":scope > .status");
  if (!selected) return;
  if (!face.passed) return say(status, t("sign.noface"), "bad");
  if (!form.reportValidity()) return;
  const device = selected;
  const ok = await busy(form, async () => {
    say(status, t("app.crypto.deriving"));
    let password = takeValue($("rev-password"));
    let wrapped;
    try {
      wrapped = await passwordKey(password, "authorize");
    } finally {
      password = null;
    }
    const check = face.take(); // spent by this attempt, whatever its outcome
    await api("DELETE", `/api/v1/me/devices/${device.device_id}`, {
      body: { face_challenge_id: check, password_key: wrapped },
    });
    const mine = thisDevice()?.device_id === device.device_id;
    if (mine) forgetDevice();
    selected = null;
    form.hidden = true;
    await load();
    say($("dev-status"), t(mine ? "app.dev.revoke.self" : "app.dev.revoke.done"), "ok");
  }, status);
  if (!ok) status.append(" ", t("enrol.key.retry"));
}

export async function enterDevices() {
  cancel();
  say($("dev-status"), "");
  await load();
}

export function stopDevices() {
  face?.stop();
}

export function initDevices() {
  face = new FaceCheck($("rev-face"));
  $("revoke-form").addEventListener("submit", onRevoke);
  $("rev-cancel").addEventListener("click", cancel);
  document.addEventListener("languagechange", () => {
    if (document.body.dataset.current === "devices") load().catch(() => {});
  });
}
