// QR decoding on the phone with jsQR (npm `jsqr`, pinned by package-lock.json
// and served locally as /portal/vendor/jsqr.js). The package ships a UMD
// build only; loaded as a module it finds neither `module` nor `define` and
// sets `self.jsQR`, which is all this file takes from it. No inline script,
// no eval: it runs under the app's strict CSP as any other module does.

import "/portal/vendor/jsqr.js";

const jsQR = self.jsQR;
/** Pictures are scaled down to this many pixels on their longer side first. */
export const MAX_SIDE = 1280;
/** The service's frames: `cloudsign.<request id>.<seconds>.<hmac>` (mobile_api/codes.py). */
const FRAME = /^cloudsign\.[0-9a-f-]{36}\.\d{1,6}\.[0-9a-f]{64}$/;

export const isFrame = (text) => typeof text === "string" && FRAME.test(text);

/** An e-government service's QR: a `mobileSign:` link to its procedure
 *  (docs/egov-qr.md); the service fetches and checks it, never this page. */
export const isEgovLink = (text) =>
  typeof text === "string" && text.length <= 2100 && /^mobileSign:https?:\/\//i.test(text);

/** The text of the QR code in a drawable (video, bitmap), or null. */
export function decode(source, width, height, { canvas, invert = true } = {}) {
  if (!width || !height) return null;
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const c = canvas || document.createElement("canvas");
  if (c.width !== w) c.width = w;
  if (c.height !== h) c.height = h;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, w, h);
  const { data } = ctx.getImageData(0, 0, w, h);
  const found = jsQR(data, w, h, { inversionAttempts: invert ? "attemptBoth" : "dontInvert" });
  return found ? found.data : null;
}

/** The text of the QR code in an image file (a photo of the screen), or null. */
export async function decodeFile(file) {
  const bitmap = await createImageBitmap(file);
  try {
    return decode(bitmap, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}
