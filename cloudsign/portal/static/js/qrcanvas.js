// A QR code drawn on a <canvas> (qrcode-generator, served locally): whole
// pixels per module and a four-module quiet zone, so any camera or decoder
// reads it. `pixels`: about how wide the code should be (at least 4 px a module).

import qrcode from "/portal/vendor/qrcode.js";

export function drawQr(canvas, text, pixels = 0) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  const margin = 4;
  const scale = pixels ? Math.max(4, Math.floor(pixels / (n + 2 * margin))) : 6;
  canvas.width = canvas.height = (n + 2 * margin) * scale;
  const g = canvas.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = "#000";
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      if (qr.isDark(r, c)) g.fillRect((c + margin) * scale, (r + margin) * scale, scale, scale);
    }
  }
}
