// The webcam: live guidance from a cheap look at the picture (brightness and
// how much of the oval looks like skin) and the burst of distinct frames a
// liveness challenge needs. Frames go out as JPEG; nothing is kept.

import { t } from "./i18n.js";

const SAMPLE_W = 64;
const SAMPLE_H = 48;
const GUIDE_INTERVAL_MS = 400;
// How long a burst waits for the camera's next picture before giving up.
const FRAME_TIMEOUT_MS = 5000;

export class Camera {
  constructor(video, guide) {
    this.video = video;
    this.guide = guide;
    this.stream = null;
    this.timer = null;
    this.sample = document.createElement("canvas");
    this.sample.width = SAMPLE_W;
    this.sample.height = SAMPLE_H;
    this.detector = "FaceDetector" in window ? new window.FaceDetector({ fastMode: true }) : null;
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
    this.timer = setInterval(() => this.updateGuide(), GUIDE_INTERVAL_MS);
    this.updateGuide();
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.video.srcObject = null;
  }

  /** Guidance: too dark / too bright / no face / move closer / face found. */
  async updateGuide() {
    if (!this.stream) return;
    const hint = await this.assess();
    this.guide.textContent = t(hint);
    this.guide.className = "guide " + (hint === "cam.ok" ? "ok" : "bad");
    this.lastHint = hint;
  }

  async assess() {
    const ctx = this.sample.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(this.video, 0, 0, SAMPLE_W, SAMPLE_H);
    const { data } = ctx.getImageData(0, 0, SAMPLE_W, SAMPLE_H);
    let luma = 0;
    let skin = 0;
    let inside = 0;
    for (let y = 0; y < SAMPLE_H; y++) {
      for (let x = 0; x < SAMPLE_W; x++) {
        const i = 4 * (y * SAMPLE_W + x);
        const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
        const yy = 0.299 * r + 0.587 * g + 0.114 * b;
        luma += yy;
        // The oval the page draws: the middle ~44% x 76% of the picture.
        const dx = (x / SAMPLE_W - 0.5) / 0.22;
        const dy = (y / SAMPLE_H - 0.5) / 0.38;
        if (dx * dx + dy * dy <= 1) {
          inside++;
          const cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b;
          const cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b;
          if (cb >= 77 && cb <= 127 && cr >= 133 && cr <= 173) skin++;
        }
      }
    }
    luma /= SAMPLE_W * SAMPLE_H;
    if (luma < 50) return "cam.dark";
    if (luma > 225) return "cam.bright";
    if (this.detector) {
      try {
        const faces = await this.detector.detect(this.video);
        if (faces.length === 0) return "cam.noface";
        if (faces.length > 1) return "cam.many";
        const w = faces[0].boundingBox.width / (this.video.videoWidth || 1);
        return w < 0.25 ? "cam.closer" : "cam.ok";
      } catch {
        /* fall back to the skin heuristic */
      }
    }
    const share = skin / Math.max(inside, 1);
    if (share < 0.08) return "cam.noface";
    if (share < 0.25) return "cam.closer";
    return "cam.ok";
  }

  /** One JPEG of the current picture, at the camera's own resolution. */
  async still(quality = 0.92) {
    const canvas = document.createElement("canvas");
    canvas.width = this.video.videoWidth;
    canvas.height = this.video.videoHeight;
    canvas.getContext("2d").drawImage(this.video, 0, 0);
    return new Promise((ok, fail) =>
      canvas.toBlob((blob) => (blob ? ok(blob) : fail(new Error("capture failed"))), "image/jpeg", quality),
    );
  }

  /**
   * Resolves with an id of the next picture the camera presents. A busy
   * machine (or phone) delivers camera frames late; a burst must never hold
   * the same picture twice, or the server rightly sees a still image.
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

  /** `count` distinct frames, at least `intervalMs` apart (a liveness burst). */
  async burst(count = 10, intervalMs = 200) {
    const frames = [];
    let last;
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      let frame = await this.nextFrame();
      while (frame === last) frame = await this.nextFrame();
      last = frame;
      frames.push(await this.still(0.9));
      const wait = intervalMs - (performance.now() - started);
      if (i < count - 1 && wait > 0) await new Promise((ok) => setTimeout(ok, wait));
    }
    return frames;
  }
}
