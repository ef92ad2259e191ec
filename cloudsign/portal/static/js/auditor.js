// The auditor's page: the log key and chain, the daily checkpoints with their
// on-chain anchors, and an inclusion check of one event done in this browser.
// Public bundles carry the public leaf only (v2: index, type, time and a
// commitment; a v1 leaf or one dropped by retention: its hash alone); an
// owner's bundle also carries the opening, which is then checked here too.

import { api } from "./api.js";
import { hex, unhex } from "./crypto.js";
import { t } from "./i18n.js";
import { busy, say } from "./ui.js";
import {
  canonicalJson,
  equalBytes,
  leafHash,
  openingOpens,
  parseCheckpoint,
  rootFromInclusionProof,
  verifyNote,
} from "./merkle.js";

const $ = (id) => document.getElementById(id);
const DAYS_SHOWN = 14;
/** Public explorers by chain id; a local dev chain has none (the anchor JSON is linked). */
const EXPLORERS = {
  1: "https://etherscan.io/tx/",
  11155111: "https://sepolia.etherscan.io/tx/",
  17000: "https://holesky.etherscan.io/tx/",
};
let keys = null;

async function optional(path) {
  try {
    return await api("GET", path);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

function addInfo(dl, label, value) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  const c = document.createElement("code");
  c.textContent = value ?? "—";
  dd.append(c);
  dl.append(dt, dd);
}

function previousDay(day) {
  const d = new Date(day + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() - 1);
  return d.toISOString().slice(0, 10);
}

function anchorCell(day, anchor) {
  const td = document.createElement("td");
  if (!anchor) {
    td.textContent = t("aud.notanchored");
    return td;
  }
  const status = document.createElement("span");
  status.className = "badge " + (anchor.status === "confirmed" ? "confirmed" : "");
  status.textContent = t("status." + anchor.status, anchor.status);
  td.append(status, " ");
  if (anchor.tx_hash) {
    const link = document.createElement("a");
    const explorer = keys && EXPLORERS[keys.chain_id];
    link.href = explorer ? explorer + anchor.tx_hash : `/log/anchors/${day}`;
    if (explorer) link.rel = "noopener noreferrer";
    link.textContent = anchor.tx_hash.slice(0, 10) + "…" + anchor.tx_hash.slice(-6);
    link.title = anchor.tx_hash;
    link.setAttribute("aria-label", `${t("aud.tx")} ${anchor.tx_hash}`);
    td.append(link);
    if (anchor.block_number != null) td.append(` · ${t("aud.block")} ${anchor.block_number}`);
  }
  return td;
}

export async function enterAuditor() {
  keys = await api("GET", "/log/keys");
  const dl = $("aud-keys");
  const info = document.createDocumentFragment();
  addInfo(info, t("aud.origin"), keys.origin);
  addInfo(info, t("aud.logkey"), keys.log_key);
  addInfo(info, t("aud.chain"), String(keys.chain_id));
  addInfo(info, t("aud.contract"), keys.contract);
  addInfo(info, t("aud.anchorer"), keys.anchor_address);
  dl.replaceChildren(info);

  // Rows are built first and swapped in at once: a re-render (language
  // switch) racing this one then cannot interleave rows.
  const rows = [];
  const latest = await optional("/log/checkpoint");
  let day = latest?.day;
  for (let i = 0; latest && i < DAYS_SHOWN; i++, day = previousDay(day)) {
    const cp = i === 0 ? latest : await optional(`/log/checkpoints/${day}`);
    if (!cp) continue;
    const anchor = await optional(`/log/anchors/${day}`);
    const row = document.createElement("tr");
    for (const text of [cp.day, String(cp.tree_size)]) {
      const td = document.createElement("td");
      td.textContent = text;
      row.append(td);
    }
    const root = document.createElement("td");
    const c = document.createElement("code");
    c.textContent = cp.root;
    root.append(c);
    row.append(root, anchorCell(cp.day, anchor));
    rows.push(row);
  }
  $("aud-days").tBodies[0].replaceChildren(...rows);
  $("aud-none").hidden = Boolean(latest);
}

function step(list, ok, text) {
  const li = document.createElement("li");
  li.className = ok ? "ok" : "bad";
  li.textContent = (ok ? "✓ " : "✗ ") + text;
  list.append(li);
  return ok;
}

async function checkProof(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  const list = $("proof-steps");
  list.replaceChildren();
  say(status, "");
  const q = $("proof-query").value.trim();
  const param = /^\d{1,18}$/.test(q)
    ? `index=${q}`
    : /^[0-9a-fA-F]{64}$/.test(q)
      ? `leaf_hash=${q.toLowerCase()}`
      : null;
  if (!param) return say(status, t("aud.proof.hint"), "bad");
  await busy(form, async () => {
    const bundle = await api("GET", `/log/proof?${param}`);
    keys ??= await api("GET", "/log/keys");
    let ok = true;
    const claimed = unhex(bundle.leaf_hash);
    if (bundle.leaf) {
      const computed = await leafHash(new TextEncoder().encode(canonicalJson(bundle.leaf)));
      ok = step(list, equalBytes(computed, claimed), t("aud.step.leaf")) && ok;
      if (bundle.opening) {
        const opens = await openingOpens(bundle.leaf, bundle.opening);
        ok = step(list, opens, t("aud.step.opening", "The opening matches the leaf's commitment")) && ok;
      }
    } else {
      step(list, true, t("aud.step.dropped"));
    }
    const cp = parseCheckpoint(bundle.checkpoint);
    ok = step(list, cp.size === bundle.tree_size && cp.origin === keys.origin, t("aud.step.size")) && ok;
    let root = null;
    try {
      root = await rootFromInclusionProof(
        claimed,
        bundle.index,
        bundle.tree_size,
        bundle.proof.map(unhex),
      );
    } catch (e) {
      step(list, false, `${t("aud.step.root")}: ${e.message}`);
      ok = false;
    }
    if (root) ok = step(list, equalBytes(root, cp.root), t("aud.step.root")) && ok;
    try {
      ok = step(list, await verifyNote(cp, keys.log_key), t("aud.step.sig")) && ok;
    } catch {
      step(list, false, t("aud.step.nosig"));
      ok = false;
    }
    const published = await optional(`/log/checkpoints/${bundle.day}`);
    ok = step(list, Boolean(published) && published.root === hex(cp.root), t("aud.step.day") + " " + bundle.day) && ok;
    say(status, ok ? `${t("aud.proof.ok")} (#${bundle.index})` : t("aud.proof.bad"), ok ? "ok" : "bad");
  }, status);
}

export function initAuditor() {
  $("proof-form").addEventListener("submit", checkProof);
}
