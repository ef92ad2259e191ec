// The live face check, as the portal's (/portal/static/js/facecheck.js) but
// over the app's Bearer session: ask for a challenge, show its actions, send
// a burst of frames from the portal's Camera. A passed check backs exactly
// one request on the server, so `take()` hands its id out once.
//
// The camera runs only for the check and is switched off right after the
// burst (a phone should not keep its camera on); each check opens it anew.

import { api, ApiError } from "./api.js";
import { t } from "./i18n.js";
import { busy, say } from "./ui.js";
import { Camera } from "/portal/static/js/camera.js";

const SHOW_ACTIONS_MS = 1200;
const BURST_FRAMES = 10;
const BURST_INTERVAL_MS = 200;

const checks = new Set();

/** Switch every camera off (the router's call on each change of view). */
export function stopAllCameras() {
  for (const check of checks) check.stop();
}

export class FaceCheck {
  /** `root`: an empty element the widget (from #face-template) is drawn in. */
  constructor(root, { onPassed = null } = {}) {
    root.replaceChildren(document.getElementById("face-template").content.cloneNode(true));
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    const guide = root.querySelector(".guide");
    guide.id = `${root.id}-guide`;
    const video = root.querySelector("video");
    video.setAttribute("aria-describedby", guide.id);
    this.root = root;
    this.camera = new Camera(video, guide);
    this.banner = root.querySelector(".action");
    this.status = root.querySelector(":scope > .status");
    this.button = root.querySelector(".face-start");
    this.onPassed = onPassed;
    this.passed = null;
    this.button.addEventListener("click", () => this.run());
    checks.add(this);
  }

  async run() {
    this.passed = null;
    this.root.classList.add("live");
    await busy(this.button, async () => {
      try {
        try {
          await this.camera.start();
        } catch (e) {
          // Refused by the citizen or the browser, or no camera at all.
          if (e?.name === "NotAllowedError" || e?.name === "NotFoundError") throw new Error(t("cam.denied"));
          throw e;
        }
        const challenge = await api("POST", "/api/v1/me/face-challenges");
        this.banner.textContent = challenge.actions.map((a) => t("action." + a, a)).join(" → ");
        this.banner.hidden = false;
        say(this.status, t("sign.face.follow"));
        // Show the actions first: the burst should start at rest.
        await new Promise((ok) => setTimeout(ok, SHOW_ACTIONS_MS));
        let frames;
        try {
          frames = await this.camera.burst(BURST_FRAMES, BURST_INTERVAL_MS);
        } finally {
          this.banner.hidden = true;
          this.stop();
        }
        say(this.status, t("sign.face.checking"));
        const form = new FormData();
        frames.forEach((f, i) => form.append("frame", f, `f${i}.jpg`));
        try {
          await api("POST", `/api/v1/me/face-challenges/${challenge.challenge_id}/burst`, { form });
        } catch (e) {
          if (e instanceof ApiError && e.code === "face_check_failed") {
            throw new Error(t("sign.face.failed") + " " + t("reason." + e.reason, e.reason));
          }
          throw e;
        }
        this.passed = challenge.challenge_id;
        say(this.status, t("sign.face.passed"), "ok");
      } finally {
        this.stop();
      }
    }, this.status);
    if (this.passed) this.onPassed?.();
  }

  /** The passed check's id, once; the check is spent by the attempt using it. */
  take() {
    const id = this.passed;
    this.passed = null;
    say(this.status, "");
    return id;
  }

  /** Forget a passed check (a new session, or a check spent elsewhere). */
  reset() {
    this.passed = null;
    say(this.status, "");
  }

  stop() {
    this.camera.stop();
    this.root.classList.remove("live");
    this.camera.guide.textContent = "";
    this.camera.guide.className = "guide";
  }
}
