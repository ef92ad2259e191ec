// Check a signature: anyone may send a signed PDF, a CMS/CAdES signature
// (with its content, or only the content's SHA-256 computed here), or an XML
// document with an XAdES signature to the validation service, and read its
// ETSI EN 319 102-1 report as a page (printable, or saved as PDF from the
// browser's print dialog), or download the server's PDF report of it (the
// same request again with Accept: application/pdf).

import { api } from "./api.js";
import { b64encode, sha256 } from "./crypto.js";
import { t } from "./i18n.js";
import { busy, say } from "./ui.js";

const $ = (id) => document.getElementById(id);
const CLASS = { "TOTAL-PASSED": "ok", "TOTAL-FAILED": "bad", INDETERMINATE: "warn" };
// The body of the request whose report is on screen: the PDF report is of it.
let shownBody = null;

function item(dl, label, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  if (value instanceof Node) dd.append(value);
  else dd.textContent = String(value);
  dl.append(dt, dd);
}

function when(iso) {
  return iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : null;
}

function indication(ind, sub) {
  const span = document.createElement("span");
  span.className = "indication " + (CLASS[ind] ?? "");
  span.textContent = sub ? `${ind} · ${sub}` : ind;
  return span;
}

function chainList(chain) {
  const ol = document.createElement("ol");
  ol.className = "chain";
  for (const c of chain) {
    const li = document.createElement("li");
    li.textContent = `${c.subject} (${t("val.serial")} ${c.serial}, ${t("val.until")} ${when(c.not_after)})`;
    ol.append(li);
  }
  return ol;
}

function coverage(sig) {
  const c = sig.coverage;
  if (!c) return null;
  if (typeof c === "string") return c;
  if (Array.isArray(c.byte_ranges)) {
    const ranges = c.byte_ranges.map((r) => `${r.start}–${r.start + r.length - 1}`).join(", ");
    const what = c.whole_document ? t("val.cover.whole") : t("val.cover.part");
    const changes = c.modifications ? ` · ${t("val.cover.changes")}: ${c.modifications}` : "";
    return `${what} (${t("val.cover.bytes")} ${ranges})${changes}`;
  }
  return JSON.stringify(c);
}

function signatureCard(sig, n) {
  const card = document.createElement("section");
  card.className = "card signature-report";
  const h = document.createElement("h3");
  h.textContent = `${t("val.signature")} ${n}`;
  card.append(h);
  const dl = document.createElement("dl");
  dl.className = "info";
  item(dl, t("val.indication"), indication(sig.indication, sig.sub_indication));
  item(dl, t("val.signer"), sig.signer?.subject);
  item(dl, t("val.serialno"), sig.signer?.serial);
  item(dl, t("val.level"), sig.level);
  item(dl, t("val.claimed"), when(sig.claimed_signing_time));
  if (sig.signature_timestamp) {
    const ts = sig.signature_timestamp;
    item(dl, t("val.timestamp"), `${when(ts.time)} · ${ts.tsa} · ${ts.verified ? t("val.verified") : t("val.unverified")}`);
  }
  const rev = sig.revocation ?? {};
  const revText = rev.status === "revoked"
    ? `${t("val.rev.revoked")} ${when(rev.revoked_at)} (${rev.reason})`
    : t("val.rev." + (rev.status ?? "unknown"), rev.status);
  item(dl, t("val.revocation"), `${revText} · ${t("val.checked")} ${when(rev.checked_at)}`);
  if (sig.checks) {
    const c = sig.checks;
    item(dl, t("val.checks"), [
      `${t("val.intact")}: ${c.intact ? "✓" : "✗"}`,
      `${t("val.valid")}: ${c.signature_valid ? "✓" : "✗"}`,
      `${t("val.trusted")}: ${c.trusted ? "✓" : "✗"}`,
    ].join(" · "));
  }
  item(dl, t("val.coverage"), coverage(sig));
  if (sig.chain?.length) item(dl, t("val.chain"), chainList(sig.chain));
  card.append(dl);
  return card;
}

/** The server's PDF report of the request on screen: the same body sent
 *  again, with no cookie (the route is public, so no CSRF token either). */
async function downloadPdf(button) {
  const body = shownBody;
  if (!body) return;
  const status = $("val-form").querySelector(".status");
  button.disabled = true;
  try {
    const resp = await fetch("/api/v1/validate", {
      method: "POST",
      headers: { Accept: "application/pdf", "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
    const type = resp.headers.get("Content-Type") || "";
    if (!resp.ok || !type.startsWith("application/pdf")) throw new Error(`HTTP ${resp.status}`);
    const url = URL.createObjectURL(await resp.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = "validation-report.pdf";
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch {
    say(status, t("val.pdf.failed"), "bad");
  } finally {
    button.disabled = false;
  }
}

function render(report, body) {
  shownBody = body;
  const out = $("val-report");
  const head = document.createElement("div");
  head.className = "card";
  const h = document.createElement("h2");
  h.append(indication(report.indication, report.sub_indication));
  head.append(h);
  const dl = document.createElement("dl");
  dl.className = "info";
  item(dl, t("val.format"), report.format);
  item(dl, t("val.time"), when(report.validation_time));
  item(dl, t("val.count"), String(report.signatures?.length ?? 0));
  head.append(dl);
  const print = document.createElement("button");
  print.type = "button";
  print.className = "secondary";
  print.id = "val-print";
  print.textContent = t("val.print");
  print.addEventListener("click", () => window.print());
  const pdf = document.createElement("button");
  pdf.type = "button";
  pdf.className = "secondary";
  pdf.id = "val-pdf";
  pdf.textContent = t("val.pdf");
  pdf.addEventListener("click", () => downloadPdf(pdf));
  head.append(" ", pdf);
  out.replaceChildren(head, ...(report.signatures ?? []).map((s, i) => signatureCard(s, i + 1)));
  out.hidden = false;
}

async function bytesOf(input) {
  const file = input.files?.[0];
  return file ? new Uint8Array(await file.arrayBuffer()) : null;
}

async function check(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  say(status, "");
  // A verdict on screen is always about the file just sent, never the last one.
  $("val-report").replaceChildren();
  $("val-report").hidden = true;
  shownBody = null;
  const signature = await bytesOf($("val-file"));
  if (!signature) return say(status, t("val.file.hint"), "bad");
  const content = await bytesOf($("val-content"));
  const body = { signature: b64encode(signature) };
  // The content stays here when only its fingerprint is needed.
  if (content) {
    if ($("val-hash-only").checked) body.content_sha256 = b64encode(await sha256(content));
    else body.content = b64encode(content);
  }
  await busy(form, async () => render(await api("POST", "/api/v1/validate", { body }), body), status);
}

export function enterValidate() {
  $("val-form").reset();
  $("val-report").replaceChildren();
  $("val-report").hidden = true;
  shownBody = null;
  say($("val-form").querySelector(".status"), "");
}

export function initValidate() {
  $("val-form").addEventListener("submit", check);
  // A printed report stands alone, without its buttons (the print button is hidden by CSS).
  window.addEventListener("beforeprint", () => {
    const pdf = $("val-pdf");
    if (pdf) pdf.hidden = true;
  });
  window.addEventListener("afterprint", () => {
    const pdf = $("val-pdf");
    if (pdf) pdf.hidden = false;
  });
}
