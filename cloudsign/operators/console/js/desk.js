// The registration desk: the citizen's live face (the capture's liveness
// challenge, a burst from the webcam), then the identity and document the
// officer checked, then the activation code, once, with a QR of its link.

import { api, ApiError } from "./api.js";
import { Camera } from "./camera.js";
import { t } from "./i18n.js";
import { drawQr } from "./qr.js";
import { $, busy, formatTime, say } from "./ui.js";

const SHOW_ACTIONS_MS = 1200;
const BURST_FRAMES = 10;
const BURST_INTERVAL_MS = 200;

let camera = null;
let captureId = null;

function setCaptured(id) {
  captureId = id;
  $("desk-fields").disabled = !id;
}

async function capture() {
  const status = $("desk-face-status");
  const banner = $("desk-action");
  setCaptured(null);
  await busy($("desk-capture"), async () => {
    await camera.start();
    say($("desk-guide"), t("cam.ready"));
    const challenge = await api("POST", "/operator/api/v1/desk/captures");
    banner.textContent = challenge.actions.map((a) => t("action." + a, a)).join(" → ");
    banner.hidden = false;
    say(status, t("desk.face.follow"));
    // Show the actions first: the burst should start at rest.
    await new Promise((ok) => setTimeout(ok, SHOW_ACTIONS_MS));
    let frames;
    try {
      frames = await camera.burst(BURST_FRAMES, BURST_INTERVAL_MS);
    } finally {
      banner.hidden = true;
    }
    say(status, t("desk.face.checking"));
    const form = new FormData();
    frames.forEach((f, i) => form.append("frame", f, `f${i}.jpg`));
    try {
      await api("POST", `/operator/api/v1/desk/captures/${challenge.capture_id}/burst`, { form });
    } catch (e) {
      if (e instanceof ApiError && e.reason) {
        throw new Error(t("desk.face.failed") + " " + t("reason." + e.reason, e.reason));
      }
      throw e;
    }
    setCaptured(challenge.capture_id);
    say(status, t("desk.face.done"), "ok");
    camera.stop();
  }, status);
}

async function approve(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!captureId || !form.reportValidity()) return;
  await busy(form, async () => {
    const result = await api("POST", "/operator/api/v1/proofings", {
      body: {
        identity: {
          kind: "person",
          iin: $("desk-iin").value.trim(),
          surname: $("desk-surname").value.trim(),
          given_name: $("desk-given").value.trim(),
          email: $("desk-email").value.trim(),
        },
        document: { type: $("desk-doc-type").value, number: $("desk-doc-number").value.trim() },
        capture_id: captureId,
      },
    });
    setCaptured(null);
    form.reset();
    say(status, t("desk.issued"), "ok");
    $("desk-code").textContent = result.activation_code;
    $("desk-uri").textContent = result.activation_uri;
    $("desk-expires").textContent = formatTime(result.expires_at);
    $("desk-done").hidden = false;
    if (!(await drawQr($("desk-qr"), result.activation_uri))) say(status, t("desk.noqr"), "ok");
  }, status);
}

function clear() {
  $("desk-done").hidden = true;
  $("desk-code").textContent = "";
  $("desk-uri").textContent = "";
  say($("desk-face-status"), "");
  say($("desk-form").querySelector(".status"), "");
}

export function initDesk() {
  camera = new Camera($("desk-video"));
  $("desk-capture").addEventListener("click", capture);
  $("desk-form").addEventListener("submit", approve);
  $("desk-next").addEventListener("click", () => {
    clear();
    $("desk-capture").focus();
  });
}

export function leaveDesk() {
  camera?.stop();
  setCaptured(null);
  $("desk-form").reset();
  clear();
}
