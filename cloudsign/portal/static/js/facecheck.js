// The live face check that creating a key, a signature and every change to
// the key or the account need: ask the server for a challenge, show its
// actions, then send a burst of webcam frames; the server compares the face
// with the one captured at the registration desk. A passed check backs
// exactly one request on the server, so `take()` hands its id out once.

import { api, ApiError } from "./api.js";
import { Camera } from "./camera.js";
import { t } from "./i18n.js";
import { busy, say } from "./ui.js";

const SHOW_ACTIONS_MS = 1200;
const BURST_FRAMES = 10;
const BURST_INTERVAL_MS = 200;

/** One face check with a started camera, over `api` (the portal's cookie
 *  session or the app's Bearer one) in the words of `t`: the challenge, its
 *  actions shown in `banner`, the burst, the verdict in `status`. Returns
 *  the passed challenge's id; a refusal throws with the reason. `after`
 *  runs once the frames are taken (the app switches its camera off). */
export async function passFaceCheck(api, t, camera, banner, status, after = null) {
  const challenge = await api("POST", "/api/v1/me/face-challenges");
  banner.textContent = challenge.actions.map((a) => t("action." + a, a)).join(" → ");
  banner.hidden = false;
  say(status, t("sign.face.follow"));
  // Show the actions first: the burst should start at rest.
  await new Promise((ok) => setTimeout(ok, SHOW_ACTIONS_MS));
  let frames;
  try {
    frames = await camera.burst(BURST_FRAMES, BURST_INTERVAL_MS);
  } finally {
    banner.hidden = true;
    after?.();
  }
  say(status, t("sign.face.checking"));
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
  say(status, t("sign.face.passed"), "ok");
  return challenge.challenge_id;
}

export class FaceCheck {
  /** Elements: video, guide, banner (the actions), status, button; and
   *  `onPassed`, called after a check passed. */
  constructor({ video, guide, banner, status, button, onPassed = null }) {
    this.camera = new Camera(video, guide);
    Object.assign(this, { banner, status, button, onPassed });
    this.passed = null;
    button.addEventListener("click", () => this.run());
  }

  async run() {
    this.passed = null;
    await busy(this.button, async () => {
      await this.camera.start();
      this.passed = await passFaceCheck(api, t, this.camera, this.banner, this.status);
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

  refresh() {
    say(this.status, this.passed ? t("sign.face.passed") : "", this.passed ? "ok" : "");
  }

  /** Forget a passed check (a new session, or one spent elsewhere). */
  reset() {
    this.passed = null;
    say(this.status, "");
  }

  stop() {
    this.camera.stop();
  }
}
