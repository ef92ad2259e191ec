// The auditor's page: the log key and chain, the daily checkpoints with their
// on-chain anchors, and an inclusion check of one event done in this browser.
// Trust does not come from this server: the auditor pins the log key's
// fingerprint, the anchor contract and the chain id as the centre publishes
// them (its CA policy), this browser keeps them, and every visit compares
// /log/keys with them; each day's anchor is read from the chain's JSON-RPC
// endpoint with eth_call (the contract's get_anchor), not from /log/anchors.
// (The page itself still comes from the server; `audit-chain` stays the
// reference.)
// Public bundles carry the public leaf only (v2: index, type, time and a
// commitment; a v1 leaf or one dropped by retention: its hash alone); an
// owner's bundle also carries the opening, which is then checked here too.

import { api } from "./api.js";
import { hex, sha256, unhex } from "./crypto.js";
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
/** keccak256("get_anchor(uint32)")[:4]; tests/portal checks it with web3. */
export const GET_ANCHOR_SELECTOR = "0xe1b023a8";
const PIN_STORE = "cloudsign.auditor.pins";
let keys = null;
/** true: /log/keys has the pinned log key; false: it does not; null: no pin. */
let keyPinned = null;

function loadPins() {
  try {
    const pins = JSON.parse(localStorage.getItem(PIN_STORE) ?? "null");
    return pins && typeof pins === "object" ? pins : null;
  } catch {
    return null;
  }
}

/** The log key's fingerprint as audit_chain.key_fingerprint prints it. */
export async function fingerprint(vkey) {
  const digest = hex(await sha256(new TextEncoder().encode(vkey)));
  return digest.match(/.{4}/g).join(" ");
}

const normalFingerprint = (text) => text.toLowerCase().replace(/[^0-9a-f]/g, "");

async function rpc(url, method, params) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const body = await response.json();
  if (body.error) throw new Error(body.error.message ?? "error");
  return body.result;
}

/** (root hex, size, block) of `day` from the contract itself; null if not anchored. */
async function anchorOnChain(url, contract, day) {
  const number = Number(day.replaceAll("-", ""));
  const data = GET_ANCHOR_SELECTOR + number.toString(16).padStart(64, "0");
  const out = await rpc(url, "eth_call", [{ to: contract, data }, "latest"]);
  const words = typeof out === "string" ? out.replace(/^0x/, "") : "";
  if (!/^[0-9a-f]{192}$/i.test(words)) throw new Error("unexpected answer");
  const root = words.slice(0, 64).toLowerCase();
  if (/^0+$/.test(root)) return null;
  return {
    root,
    size: BigInt("0x" + words.slice(64, 128)),
    block: BigInt("0x" + words.slice(128, 192)),
  };
}

function chainCell(checkpoint, onChain, error) {
  const td = document.createElement("td");
  if (error) {
    td.className = "bad";
    td.textContent = `${t("aud.chain.unreachable")}: ${error.message}`;
  } else if (!onChain) {
    td.textContent = t("aud.chain.absent");
  } else if (onChain.root === checkpoint.root && onChain.size === BigInt(checkpoint.tree_size)) {
    td.className = "ok";
    td.textContent = `✓ ${t("aud.chain.match")} · ${t("aud.block")} ${onChain.block}`;
  } else {
    td.className = "bad";
    td.textContent = `✗ ${t("aud.chain.differs")}: ${onChain.root.slice(0, 16)}… / ${onChain.size}`;
  }
  return td;
}

async function checkPins(list, pins, printed, rpcUrl) {
  const checks = [];
  if (!pins) {
    const li = document.createElement("li");
    li.className = "warn";
    li.textContent = t("aud.pin.none");
    checks.push(li);
    keyPinned = null;
  } else {
    keyPinned = normalFingerprint(pins.fingerprint ?? "") === normalFingerprint(printed);
    const item = (ok, text) => {
      const li = document.createElement("li");
      li.className = ok ? "ok" : "bad";
      li.textContent = (ok ? "✓ " : "✗ ") + text;
      checks.push(li);
    };
    item(keyPinned, t("aud.pin.key"));
    if (pins.contract) {
      item(pins.contract.toLowerCase() === String(keys.contract).toLowerCase(), t("aud.pin.contract"));
    }
    if (pins.chain_id && rpcUrl) {
      try {
        const id = BigInt(await rpc(rpcUrl, "eth_chainId", []));
        item(id === BigInt(pins.chain_id), t("aud.pin.chain"));
      } catch (e) {
        item(false, `${t("aud.chain.unreachable")}: ${e.message}`);
      }
    }
  }
  list.replaceChildren(...checks);
}

function fillPinForm(pins) {
  $("pin-fp").value = pins?.fingerprint ?? "";
  $("pin-contract").value = pins?.contract ?? "";
  $("pin-chain").value = pins?.chain_id ?? "";
  $("pin-rpc").value = pins?.rpc ?? "";
}

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
  const pins = loadPins();
  const printed = await fingerprint(keys.log_key);
  // Reads go to the pinned endpoint and contract when there are pins.
  const rpcUrl = pins?.rpc || keys.chain_rpc_url;
  const contract = pins?.contract || keys.contract;
  const dl = $("aud-keys");
  const info = document.createDocumentFragment();
  addInfo(info, t("aud.origin"), keys.origin);
  addInfo(info, t("aud.logkey"), keys.log_key);
  addInfo(info, t("aud.fingerprint"), printed);
  addInfo(info, t("aud.chain"), String(keys.chain_id));
  addInfo(info, t("aud.contract"), keys.contract);
  addInfo(info, t("aud.anchorer"), keys.anchor_address);
  addInfo(info, t("aud.rpc"), rpcUrl);
  dl.replaceChildren(info);
  fillPinForm(pins);
  await checkPins($("aud-pin-checks"), pins, printed, rpcUrl);

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
    let onChain = null;
    let error = null;
    if (rpcUrl && contract) {
      try {
        onChain = await anchorOnChain(rpcUrl, contract, cp.day);
      } catch (e) {
        error = e;
      }
    } else {
      error = new Error(t("aud.chain.noendpoint"));
    }
    row.append(root, anchorCell(cp.day, anchor), chainCell(cp, onChain, error));
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
    if (keyPinned === false) {
      ok = step(list, false, t("aud.pin.key.bad"));
    }
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

async function savePins(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(".status");
  const fp = normalFingerprint($("pin-fp").value);
  const contract = $("pin-contract").value.trim();
  const chain = $("pin-chain").value.trim();
  const rpcUrl = $("pin-rpc").value.trim();
  if (fp.length !== 64) return say(status, t("aud.pin.fp.hint"), "bad");
  if (contract && !/^0x[0-9a-fA-F]{40}$/.test(contract)) return say(status, t("aud.pin.contract.hint"), "bad");
  if (chain && !/^\d{1,12}$/.test(chain)) return say(status, t("aud.pin.chain.hint"), "bad");
  if (rpcUrl && !/^https?:\/\//.test(rpcUrl)) return say(status, t("aud.pin.rpc.hint"), "bad");
  const pins = { fingerprint: fp.match(/.{4}/g).join(" ") };
  if (contract) pins.contract = contract;
  if (chain) pins.chain_id = chain;
  if (rpcUrl) pins.rpc = rpcUrl;
  localStorage.setItem(PIN_STORE, JSON.stringify(pins));
  if (await busy(form, enterAuditor, status)) say(status, t("aud.pin.saved"), "ok");
}

async function forgetPins() {
  localStorage.removeItem(PIN_STORE);
  await enterAuditor();
}

export function initAuditor() {
  $("proof-form").addEventListener("submit", checkProof);
  $("pin-form").addEventListener("submit", savePins);
  $("pin-clear").addEventListener("click", forgetPins);
}
