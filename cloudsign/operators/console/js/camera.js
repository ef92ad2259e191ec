// The desk's webcam: a liveness burst of distinct JPEG frames for the
// capture's challenge. Frames go to the server only; nothing is kept here.

import { t } from "./i18n.js";

// How long a burst waits for the camera's next picture before giving up.
const FRAME_TIMEOUT_MS = 5000;

export class Camera {
  constructor(video) {
    this.video = video;
    this.stream = null;
  }

  async start() {
    if (this.stream) return;
    if (!navigator.mediaDevices?.getUserMedia) throw new Error(t("cam.unsupported"));
    this.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" },
      audio: false,
    });
    this.video.srcObject = this.stream;
    await this.video.play().catch(() => {});
    await new Promise((ok) =>
      this.video.readyState >= 2 ? ok() : this.video.addEventListener("loadeddata", ok, { once: true }),
    );
  }

  stop() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.video.srcObject = null;
  }

  /** One JPEG of the current picture, at the camera's own resolution. */
  async still(quality = 0.9) {
    const canvas = document.createElement("canvas");
    canvas.width = this.video.videoWidth;
    canvas.height = this.video.videoHeight;
    canvas.getContext("2d").drawImage(this.video, 0, 0);
    return new Promise((ok, fail) =>
      canvas.toBlob((blob) => (blob ? ok(blob) : fail(new Error("capture failed"))), "image/jpeg", quality),
    );
  }

  /**
   * Resolves with an id of the next picture the camera presents: a burst
   * must never hold the same picture twice, or the server rightly sees a
   * still image.
   */
  nextFrame(timeoutMs = FRAME_TIMEOUT_MS) {
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(t("cam.stalled"))), timeoutMs);
      const done = (_now, meta) => {
        clearTimeout(timer);
        ok(meta?.presentedFrames ?? meta?.mediaTime ?? this.video.currentTime);
      };
      if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(done);
      else requestAnimationFrame(() => done(0, null));
    });
  }

  /** `count` distinct frames, at least `intervalMs` apart. */
  async burst(count, intervalMs) {
    const frames = [];
    let last;
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      let frame = await this.nextFrame();
      while (frame === last) frame = await this.nextFrame();
      last = frame;
      frames.push(await this.still());
      const wait = intervalMs - (performance.now() - started);
      if (i < count - 1 && wait > 0) await new Promise((ok) => setTimeout(ok, wait));
    }
    return frames;
  }
}
