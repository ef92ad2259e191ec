// What a document looks like, shown before anything is approved: a PDF's
// pages drawn by pdf.js (the npm package pdfjs-dist, pinned by
// package-lock.json and served from /portal/vendor/, loaded only when a PDF
// is shown), a short text file as its text. Both are drawn in this browser
// from the very bytes whose SHA-256 the app has just checked against the
// request's commitment, so what the citizen reads is what gets signed.
// pdf.js runs without eval and without XFA; the PDF is parsed in its worker.

import { t, tf } from "./i18n.js";

const MAX_PAGES = 10;
const MAX_TEXT_BYTES = 64 * 1024;
const MAX_TEXT_CHARS = 4000;
let pdfjs = null;

async function library() {
  if (!pdfjs) {
    pdfjs = await import("/portal/vendor/pdf.js");
    pdfjs.GlobalWorkerOptions.workerSrc = "/portal/vendor/pdf.worker.js";
  }
  return pdfjs;
}

export function looksLikePdf(bytes) {
  return bytes.length > 5 && String.fromCharCode(...bytes.subarray(0, 5)) === "%PDF-";
}

/** The first pages of a PDF as canvases, `width` CSS pixels wide. */
export async function pdfPreview(bytes, width) {
  const lib = await library();
  // getDocument hands its buffer to the worker: give it a copy.
  const task = lib.getDocument({ data: bytes.slice(), isEvalSupported: false, enableXfa: false });
  const doc = await task.promise;
  const box = document.createElement("div");
  box.className = "pages";
  try {
    const shown = Math.min(doc.numPages, MAX_PAGES);
    for (let n = 1; n <= shown; n++) {
      const page = await doc.getPage(n);
      const scale = (width * (window.devicePixelRatio || 1)) / page.getViewport({ scale: 1 }).width;
      const viewport = page.getViewport({ scale });
      const canvas = document.createElement("canvas");
      canvas.className = "page";
      canvas.width = Math.floor(viewport.width);
      canvas.height = Math.floor(viewport.height);
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", tf("app.req.doc.page", { n, count: doc.numPages }));
      await page.render({ canvas, canvasContext: canvas.getContext("2d"), viewport }).promise;
      box.append(canvas);
    }
    if (doc.numPages > shown) {
      const more = document.createElement("p");
      more.className = "hint";
      more.textContent = tf("app.req.doc.more", { more: doc.numPages - shown });
      box.append(more);
    }
  } finally {
    await task.destroy();
  }
  return box;
}

/** A short UTF-8 text file as text; null for anything else. */
export function textPreview(bytes) {
  if (bytes.length > MAX_TEXT_BYTES) return null;
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  if (/[\u0000-\u0008\u000e-\u001f\u007f]/.test(text)) return null;
  const pre = document.createElement("pre");
  pre.className = "text-preview";
  pre.textContent = text.length > MAX_TEXT_CHARS ? text.slice(0, MAX_TEXT_CHARS) + "…" : text;
  return pre;
}

/** The preview of a checked document, or a note saying why there is none. */
export async function preview(bytes, width) {
  if (looksLikePdf(bytes)) {
    try {
      return await pdfPreview(bytes, width);
    } catch {
      const note = document.createElement("p");
      note.className = "hint";
      note.textContent = t("app.req.doc.nopreview");
      return note;
    }
  }
  return textPreview(bytes);
}
