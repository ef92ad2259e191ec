// RFC 9162 Merkle tree hashing and inclusion proofs, the C2SP signed-note
// checkpoint and the opening of a v2 leaf's commitment, verified in the
// browser with WebCrypto (same rules as audit_chain/merkle.py,
// audit_chain/checkpoint.py and audit_chain/leaf.py).

import { b64decode, sha256, unhex } from "./crypto.js";

const LEAF = new Uint8Array([0]);
const NODE = new Uint8Array([1]);
const SIG_PREFIX = "\u2014 ";
const COMMITMENT_LABEL = new TextEncoder().encode("cloudsign-audit-leaf-commitment/2\0");

export const leafHash = (bytes) => sha256(LEAF, bytes);
export const nodeHash = (left, right) => sha256(NODE, left, right);

/** Canonical leaf bytes: sorted keys, no whitespace, UTF-8 (audit_chain/leaf.py). */
export function canonicalJson(value) {
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalJson(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
}

/**
 * What a v2 leaf's commitment covers: the whole event (the opening's private
 * part with the leaf's index, time and type), as canonical JSON with "v": 2.
 */
export function committedMessage(leaf, opening) {
  const { salt, ...privatePart } = opening;
  return canonicalJson({ ...privatePart, index: leaf.index, time: leaf.time, type: leaf.type, v: 2 });
}

/** Whether `opening` opens the v2 `leaf`: SHA-256(label || salt || message) is its commitment. */
export async function openingOpens(leaf, opening) {
  if (leaf?.v !== 2 || typeof opening?.salt !== "string" || opening.salt.length !== 64) return false;
  const message = new TextEncoder().encode(committedMessage(leaf, opening));
  const digest = await sha256(COMMITMENT_LABEL, unhex(opening.salt), message);
  return equalBytes(digest, unhex(leaf.commitment));
}

/** The root a proof implies for `leaf` at `index` in a tree of `size` (RFC 9162 2.1.3.2). */
export async function rootFromInclusionProof(leaf, index, size, proof) {
  if (!(index < size)) throw new Error("index is not below the tree size");
  let fn = BigInt(index);
  let sn = BigInt(size - 1);
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new Error("proof is longer than the tree is deep");
    if (fn & 1n || fn === sn) {
      r = await nodeHash(p, r);
      if (!(fn & 1n)) {
        while (fn && !(fn & 1n)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("proof is shorter than the tree is deep");
  return r;
}

/** Split a signed note into its checkpoint body and signature lines. */
export function parseCheckpoint(note) {
  const cut = note.indexOf("\n\n");
  if (cut < 0) throw new Error("not a signed note");
  const body = note.slice(0, cut + 1);
  const [origin, size, root] = body.slice(0, -1).split("\n");
  const signatures = note
    .slice(cut + 2)
    .split("\n")
    .filter((l) => l.startsWith(SIG_PREFIX))
    .map((l) => {
      const [name, blob] = l.slice(SIG_PREFIX.length).split(" ");
      const raw = b64decode(blob);
      return { name, keyId: raw.subarray(0, 4), signature: raw.subarray(4) };
    });
  return { body, origin, size: Number(size), root: b64decode(root), signatures };
}

/** Verify the note's Ed25519 signature by the log key `vkey` (name+id+base64(1||key)). */
export async function verifyNote(checkpoint, vkey) {
  const [name, , ...rest] = vkey.split("+");
  const blob = b64decode(rest.join("+"));
  if (blob.length !== 33 || blob[0] !== 1) throw new Error("not an Ed25519 verifier key");
  const key = await crypto.subtle.importKey("raw", blob.subarray(1), { name: "Ed25519" }, false, [
    "verify",
  ]);
  const mine = checkpoint.signatures.filter((s) => s.name === name);
  if (!mine.length) return false;
  const message = new TextEncoder().encode(checkpoint.body);
  for (const s of mine) {
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, s.signature, message))) return false;
  }
  return true;
}

export function equalBytes(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
