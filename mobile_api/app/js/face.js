// The live face check: the portal's (/portal/static/js/facecheck.js,
// passFaceCheck) over the app's Bearer session, in a widget of the app's. A passed check backs exactly
// one request on the server, so `take()` hands its id out once.
//
// The camera runs only for the check and is switched off right after the
// burst (a phone should not keep its camera on); each check opens it anew.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { busy, say } from "./ui.js";
import { Camera } from "/portal/static/js/camera.js";
import { passFaceCheck } from "/portal/static/js/facecheck.js";

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
        this.passed = await passFaceCheck(api, t, this.camera, this.banner, this.status, () =>
          this.stop(),
        );
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
