// QR codes on a canvas, drawn with the portal's vendored library (served
// from the console's own origin: the CSP loads no script from elsewhere).
// The library is loaded on first use, so a console without it still works
// and says so instead of showing a code.

const SCALE = 6;
const MARGIN = 4;

/** Draw `text` on `canvas` and show its wrapper; false when the library is missing. */
export async function drawQr(canvas, text) {
  let qrcode;
  try {
    ({ default: qrcode } = await import("/console/vendor/qrcode.js"));
  } catch {
    canvas.parentElement.hidden = true;
    return false;
  }
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  canvas.width = canvas.height = (n + 2 * MARGIN) * SCALE;
  const g = canvas.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = "#000";
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (qr.isDark(r, c)) g.fillRect((c + MARGIN) * SCALE, (r + MARGIN) * SCALE, SCALE, SCALE);
    }
  }
  canvas.parentElement.hidden = false;
  return true;
}

/** Wipe the code off `canvas` (a zero-size canvas holds no pixels) and hide it. */
export function clearQr(canvas) {
  canvas.width = canvas.height = 0;
  canvas.parentElement.hidden = true;
}
