// "Sign on my phone": files chosen here, approved on the bound phone.
//
// The page creates a signing request (POST /api/v1/signing-requests: a PDF
// is signed inside it in PAdES, an XML document gets an enveloped XAdES
// signature, any other file a detached CAdES .p7s;
// the files go up whole so the phone can show them), then shows its
// verification code and the animated QR the phone scans. Once a second it
// asks for the request's state and, while it is pending, for the QR frame
// to show now (GET .../qr): the frame carries an HMAC of the time, so one
// photographed a few seconds ago is refused. The QR secret never reaches
// this page; it only draws the text the server hands it.
//
// The loop stops when the request is decided (approved and signed,
// declined, expired, failed), when the citizen leaves the screen, and while
// the page is hidden (a QR nobody sees is not drawn; it resumes when the
// page shows again). On approval each signature is offered for download,
// from the bytes the service returned to this screen; they are in the
// cabinet too.

import { ApiError, api } from "./api.js";
import { b64decode, b64encode, hex, sha256 } from "./crypto.js";
import { t } from "./i18n.js";
import { busy, describeError, formatBytes, say } from "./ui.js";
import { drawQr } from "./qrcanvas.js";

const $ = (id) => document.getElementById(id);
const TICK_MS = 1000;
const MAX_FILES = 20; // the service's default max_request_documents
const MAX_TOTAL_BYTES = 11 << 20; // base64 in a 16 MiB JSON body
const MAX_TEXT = 1000;
const LEVELS = { pades: ["B", "T", "LT"], cades: ["B", "T"], xades: ["B", "T"] };
const FINAL = new Set(["approved", "declined", "expired", "failed", "withdrawn"]);

let files = []; // [{ name, bytes, digest, format }]
let autoText = ""; // the display text this page proposed (replaced when the files change)
let current = null; // the request shown: { id, last (its latest state), done }
let timer = null;
let run = 0; // bumps on every stop: a tick of an older run does nothing

const isPdf = (file) => file.type === "application/pdf" || file.name.toLowerCase().endsWith(".pdf");
const isXml = (file) =>
  ["application/xml", "text/xml"].includes(file.type) || file.name.toLowerCase().endsWith(".xml");
const FORMAT_LABELS = { pades: "phone.format.pades", xades: "phone.format.xades", cades: "phone.format.cades" };

/** What a chosen file is signed as. */
const formatOf = (file) => (isPdf(file) ? "pades" : isXml(file) ? "xades" : "cades");

/** The name a signature is saved under (as the sign screen's download). */
function signedName(doc) {
  const base = doc.name || "document";
  if (doc.format === "pades") return `${base.replace(/\.pdf$/i, "")}-signed.pdf`;
  if (doc.format === "xades") return `${base.replace(/\.xml$/i, "")}-signed.xml`;
  return `${base}.p7s`;
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  row.append(td);
}

function code(text) {
  const c = document.createElement("code");
  c.className = "hash";
  c.textContent = text;
  return c;
}

// -- choosing ------------------------------------------------------------------

async function onFiles(ev) {
  const status = document.querySelector("#phone-form .status");
  const picked = [...ev.target.files];
  files = [];
  say(status, "");
  if (picked.length > MAX_FILES) {
    say(status, t("phone.files.many").replace("{n}", String(MAX_FILES)), "bad");
  } else if (picked.reduce((n, f) => n + f.size, 0) > MAX_TOTAL_BYTES) {
    say(status, t("phone.files.big").replace("{size}", formatBytes(MAX_TOTAL_BYTES)), "bad");
  } else {
    for (const file of picked) {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const format = formatOf(file);
      files.push({ name: file.name, bytes, digest: await sha256(bytes), format });
    }
  }
  showFiles();
  const text = $("phone-text");
  if (!text.value.trim() || text.value === autoText) {
    autoText = files.length
      ? `${t("phone.text.default")} ${files.map((f) => f.name).join(", ")}`.slice(0, MAX_TEXT)
      : "";
    text.value = autoText;
  }
}

function showFiles() {
  const table = $("phone-files-list");
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const f of files) {
    const row = document.createElement("tr");
    cell(row, f.name);
    cell(row, formatBytes(f.bytes.length));
    cell(row, t(FORMAT_LABELS[f.format]));
    cell(row, code(hex(f.digest)));
    body.append(row);
  }
  table.hidden = files.length === 0;
  offerLevels();
}

/** Only the levels every chosen file's format allows (LT is for PDFs). */
function offerLevels() {
  const select = $("phone-level");
  const allowed = new Set(["B", "T", "LT"]);
  for (const f of files) {
    for (const level of allowed) if (!LEVELS[f.format].includes(level)) allowed.delete(level);
  }
  for (const option of select.options) option.disabled = !allowed.has(option.value);
  if (select.selectedOptions[0]?.disabled) select.value = "B";
}

// -- the request -----------------------------------------------------------------

async function onCreate(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  if (!files.length) return say(status, t("sign.nofile"), "bad");
  const text = $("phone-text");
  if (!text.value.trim()) {
    text.setCustomValidity(t("phone.text.missing"));
    text.reportValidity();
    text.setCustomValidity("");
    return;
  }
  await busy(form, async () => {
    say(status, t("phone.creating"));
    let created;
    try {
      created = await api("POST", "/api/v1/signing-requests", {
        body: {
          display_text: text.value.trim().slice(0, MAX_TEXT),
          level: $("phone-level").value,
          documents: files.map((f) => ({
            name: f.name.slice(0, 200),
            format: f.format,
            content: b64encode(f.bytes),
          })),
        },
      });
    } catch (e) {
      // 409: no bound phone (or no key to sign with), said plainly.
      if (e instanceof ApiError && e.status === 409) {
        say(status, noPhone(e), "bad");
        $("phone-nophone").hidden = false;
        return;
      }
      throw e;
    }
    say(status, "");
    $("phone-nophone").hidden = true;
    show(created);
  }, status);
}

/** The 409 of a create: no bound phone, or no key at all. */
function noPhone(e) {
  return e.code === "no_device" ? t("phone.nophone") : describeError(e);
}

/** The waiting screen for a new request, and its loop. */
function show(req) {
  stop();
  current = { id: req.request_id, last: req, done: false };
  $("phone-form").hidden = true;
  $("phone-wait").hidden = false;
  $("phone-result").hidden = true;
  $("phone-downloads").replaceChildren();
  $("phone-code").textContent = req.verification_code;
  $("phone-request-text").textContent = req.display_text;
  $("phone-qr-wrap").hidden = false;
  $("phone-again").hidden = false;
  clearQr();
  showState(req);
  start();
}

function start() {
  if (!current || current.done || timer !== null) return;
  const mine = ++run;
  const tick = async () => {
    timer = null;
    if (mine !== run || !current) return;
    const go = await step();
    if (go && mine === run && !document.hidden) timer = setTimeout(tick, TICK_MS);
  };
  tick();
}

/** Stop asking (leaving the screen, the page hidden, a decision). */
function stop() {
  run++;
  if (timer !== null) clearTimeout(timer);
  timer = null;
}

/** One round: the state, then (while pending) the frame to draw. False: stop. */
async function step() {
  const { id } = current;
  let req;
  try {
    req = await api("GET", `/api/v1/signing-requests/${encodeURIComponent(id)}`);
  } catch (e) {
    return gone(e);
  }
  if (!current || current.id !== id) return false;
  current.last = req;
  current.error = false;
  showState(req);
  if (FINAL.has(req.status) || req.status === "signing") {
    clearQr();
    $("phone-qr-wrap").hidden = true;
    if (req.status === "signing") return true; // approved; the HSM is signing still
    finish(req);
    return false;
  }
  try {
    const frame = await api("GET", `/api/v1/signing-requests/${encodeURIComponent(id)}/qr`);
    if (current && current.id === id && !document.hidden) showQr($("phone-qr"), frame.qr);
  } catch (e) {
    // 409: decided meanwhile (the next round says how); 404/410: gone.
    if (e instanceof ApiError && e.status === 409) {
      clearQr();
      return true;
    }
    return gone(e);
  }
  return true;
}

/** The request cannot be read any more: say so and stop. */
function gone(e) {
  if (!current) return false; // started over meanwhile
  const state = $("phone-state");
  if (e instanceof ApiError && [401, 404, 410].includes(e.status)) current.done = true;
  current.error = true;
  clearQr();
  $("phone-qr-wrap").hidden = true;
  if (e instanceof ApiError && (e.status === 404 || e.status === 410)) {
    say(state, t(e.status === 410 ? "phone.state.expired" : "phone.state.gone"), "bad");
    return false;
  }
  if (e instanceof ApiError && e.status === 401) {
    say(state, describeError(e), "bad");
    return false;
  }
  // A network blip or a limit: keep the request, try again at the next tick.
  say(state, describeError(e), "bad");
  $("phone-qr-wrap").hidden = false;
  return true;
}

function showState(req) {
  const state = $("phone-state");
  const key = {
    pending: "phone.state.pending",
    signing: "phone.state.signing",
    approved: "phone.state.approved",
    declined: "phone.state.declined",
    withdrawn: "phone.state.withdrawn",
    expired: "phone.state.expired",
    failed: "phone.state.failed",
  }[req.status];
  let text = t(key || "phone.state.failed");
  if (req.status === "failed" && req.error) text += ` (${req.error})`;
  const waiting = req.status === "pending" || req.status === "signing";
  say(state, text, waiting ? "" : req.status === "approved" ? "ok" : "bad");
  document.getElementById("phone-wait").dataset.status = req.status;
}

/** A decision: the QR goes; an approval offers every signature. */
function finish(req) {
  stop();
  current.done = true;
  if (req.status === "approved") {
    const list = $("phone-downloads");
    list.replaceChildren();
    for (const doc of req.documents) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      const types = { pades: "application/pdf", xades: "application/xml" };
      const type = types[doc.format] || "application/pkcs7-signature";
      link.href = URL.createObjectURL(new Blob([b64decode(doc.signature)], { type }));
      link.download = signedName(doc);
      link.className = "button";
      link.textContent = `${t("phone.download")}: ${link.download}`;
      link.dataset.position = String(doc.position);
      item.append(link);
      list.append(item);
    }
    $("phone-result").hidden = false;
  }
}

/** Back to the form for another request (the shown one is left to expire). */
/** Another signature: a request still undecided is withdrawn, so the phone
 *  no longer offers it. */
async function startOver() {
  const undecided = current && !current.done ? current.id : null;
  resetPhone();
  if (undecided === null) return;
  try {
    await api("DELETE", `/api/v1/signing-requests/${encodeURIComponent(undecided)}`);
  } catch {
    /* decided or gone meanwhile: nothing left to take back */
  }
}

export function resetPhone() {
  stop();
  current = null;
  clearQr();
  for (const link of document.querySelectorAll("#phone-downloads a")) {
    URL.revokeObjectURL(link.href);
  }
  $("phone-downloads").replaceChildren();
  $("phone-wait").hidden = true;
  $("phone-result").hidden = true;
  $("phone-again").hidden = true;
  delete $("phone-wait").dataset.status;
  $("phone-form").hidden = false;
  $("phone-files").value = "";
  $("phone-text").value = "";
  autoText = "";
  files = [];
  showFiles();
}

// -- the QR --------------------------------------------------------------------

const QR_PIXELS = 320; // whole pixels per module: a sharp image for any camera

function showQr(canvas, text) {
  drawQr(canvas, text, QR_PIXELS);
  canvas.dataset.drawn = String(Number(canvas.dataset.drawn || 0) + 1);
}

function clearQr() {
  const canvas = $("phone-qr");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.drawn;
}

// -- the view ------------------------------------------------------------------

export async function enterPhone() {
  // Coming back to a request still shown: go on asking about it.
  if (current) start();
}

/** Leaving the screen: stop asking and drawing. */
export function leavePhone() {
  stop();
  if (current) clearQr();
}

export function initPhone() {
  const status = document.querySelector("#phone-form .status");
  $("phone-files").addEventListener("change", (ev) =>
    onFiles(ev).catch((e) => say(status, describeError(e), "bad")),
  );
  $("phone-form").addEventListener("submit", onCreate);
  $("phone-again").addEventListener("click", startOver);
  document.addEventListener("visibilitychange", () => {
    if (document.body.dataset.current !== "phone" || !current) return;
    if (document.hidden) leavePhone();
    else start();
  });
  document.addEventListener("languagechange", () => {
    if (files.length) showFiles();
    if (current?.last && !current.error) showState(current.last);
    for (const link of document.querySelectorAll("#phone-downloads a")) {
      link.textContent = `${t("phone.download")}: ${link.download}`;
    }
  });
}
