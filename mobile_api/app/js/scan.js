// Scanning the animated QR that a requesting screen shows (a relying
// party's page, the portal): the live rear camera, decoded frame by frame
// with jsQR, or a photo of the code when the camera cannot be opened here.
// A frame names a request and the second the screen showed it, with an HMAC
// only the service can make, so a frame is claimed at once
// (`POST /api/v1/device/qr`) and the request's own screen opens (request.js:
// what is signed, the code computed here, the approval). A frame the service
// refuses (old, already taken, another citizen's, not one of ours) says so;
// the camera is off again whenever this screen is left. An e-government
// service's QR (a `mobileSign:` link) goes to the service as it is
// (`POST /api/v1/device/egov-qr`), which fetches the procedure server side and
// answers with an ordinary request to approve.

import { api, ApiError } from "./api.js";
import { t } from "./i18n.js";
import { decode, decodeFile, isEgovLink, isFrame } from "./qr.js";
import { $, describeError, say } from "./ui.js";
import { Camera } from "/portal/static/js/camera.js";

const SCAN_INTERVAL_MS = 150;

/** The portal's camera, pointed the other way: the rear camera if the phone has one. */
class RearCamera extends Camera {
  async start() {
    if (this.stream) return;
    if (!navigator.mediaDevices?.getUserMedia) throw new Error(t("cam.unsupported"));
    this.stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: false,
    });
    this.video.srcObject = this.stream;
    await this.video.play().catch(() => {});
    await new Promise((ok) =>
      this.video.readyState >= 2 ? ok() : this.video.addEventListener("loadeddata", ok, { once: true }),
    );
  }
}

let camera = null;
let timer = null;
let claiming = false;
const canvas = document.createElement("canvas");

const status = () => $("scan-status");

function live(on) {
  $("scan-view").classList.toggle("live", on);
  $("scan-start").hidden = on;
  $("scan-stop").hidden = !on;
  document.body.dataset.camera = on ? "on" : "off";
}

export function stopScan() {
  clearTimeout(timer);
  timer = null;
  camera?.stop();
  if ($("scan-view")) live(false);
}

/** The service's word on a frame: the request's screen, or why not. */
async function claim(text) {
  if (claiming) return;
  const egov = isEgovLink(text);
  if (!egov && !isFrame(text)) {
    say(status(), t("app.scan.notours"), "bad");
    return;
  }
  claiming = true;
  stopScan();
  say(status(), t("app.scan.claiming"));
  try {
    const req = egov
      ? await api("POST", "/api/v1/device/egov-qr", { body: { link: text } })
      : await api("POST", "/api/v1/device/qr", { body: { qr: text } });
    say(status(), "");
    location.hash = `#/request/${encodeURIComponent(req.request_id)}`;
  } catch (e) {
    // One refusal for every reason (the service does not say which).
    const refused = e instanceof ApiError && e.status === 404;
    say(status(), refused ? t("app.scan.refused") : describeError(e), "bad");
  } finally {
    claiming = false;
  }
}

function tick() {
  timer = null;
  const video = $("scan-video");
  if (!camera?.stream) return;
  if (video.readyState >= 2) {
    const text = decode(video, video.videoWidth, video.videoHeight, { canvas, invert: false });
    if (text !== null && (isFrame(text) || isEgovLink(text))) return claim(text);
    if (text !== null) say(status(), t("app.scan.notours"), "bad");
  }
  timer = setTimeout(tick, SCAN_INTERVAL_MS);
}

async function startCamera() {
  stopScan();
  say(status(), t("app.scan.starting"));
  camera = new RearCamera($("scan-video"), status());
  try {
    await camera.start();
  } catch (e) {
    camera.stop();
    const denied = e?.name === "NotAllowedError" || e?.name === "NotFoundError";
    say(status(), denied ? t("app.scan.nocamera") : describeError(e), "bad");
    return;
  }
  // Left meanwhile (the camera took a while to open): off again at once.
  if (document.body.dataset.current !== "scan") {
    camera.stop();
    return;
  }
  live(true);
  say(status(), t("app.scan.aim"));
  tick();
}

async function onPhoto(ev) {
  const input = ev.currentTarget;
  const file = input.files?.[0];
  input.value = ""; // the same photo may be chosen again
  if (!file) return;
  stopScan();
  say(status(), t("app.scan.reading"));
  let text;
  try {
    text = await decodeFile(file);
  } catch {
    text = null;
  }
  if (text === null) {
    say(status(), t("app.scan.nocode"), "bad");
    return;
  }
  await claim(text);
}

export async function enterScan() {
  stopScan();
  say(status(), "");
}

export function initScan() {
  $("scan-start").addEventListener("click", startCamera);
  $("scan-stop").addEventListener("click", () => {
    stopScan();
    say(status(), "");
  });
  $("scan-photo").addEventListener("change", onPhoto);
  // A phone in a pocket, or another app in front: the camera goes off.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" && camera?.stream) {
      stopScan();
      say(status(), "");
    }
  });
}
