// What the phone recomputes before it approves (docs/wire-format.md, "Approving
// on the phone"), with WebCrypto's SHA-256, the same three values the service
// derives (mobile_api/codes.py, device_client/approval.py). `field(x)` is
// len(x) as 4 bytes big-endian, then x.
//   commitment  = SHA-256("cloudsign/signing-request/v1\0" || field(id) ||
//                 field(hash algorithm) || count (4 bytes) || field(h1) .. field(hn))
//   code        = last two bytes of SHA-256("cloudsign/verification-code/v1\0" ||
//                 commitment), big-endian, mod 10000, four digits
//   challenge   = SHA-256("cloudsign/approval/v1\0" || commitment || field(code) ||
//                 field(nonce))

const enc = new TextEncoder();
const COMMITMENT_LABEL = enc.encode("cloudsign/signing-request/v1\0");
const CODE_LABEL = enc.encode("cloudsign/verification-code/v1\0");
const CHALLENGE_LABEL = enc.encode("cloudsign/approval/v1\0");

function u32(n) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, false);
  return out;
}

const field = (bytes) => [u32(bytes.byteLength), bytes];

async function sha256(parts) {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const buf = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    buf.set(p, at);
    at += p.byteLength;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}

/** `hashes`: the documents' hashes (Uint8Array each), in document order. */
export function commitment(requestId, hashAlgorithm, hashes) {
  return sha256([
    COMMITMENT_LABEL,
    ...field(enc.encode(requestId)),
    ...field(enc.encode(hashAlgorithm)),
    u32(hashes.length),
    ...hashes.flatMap((h) => field(new Uint8Array(h))),
  ]);
}

export async function verificationCode(commitmentBytes) {
  const digest = await sha256([CODE_LABEL, commitmentBytes]);
  const n = ((digest[30] << 8) | digest[31]) % 10000;
  return String(n).padStart(4, "0");
}

export function approvalChallenge(commitmentBytes, code, nonce) {
  return sha256([CHALLENGE_LABEL, commitmentBytes, ...field(enc.encode(code)), ...field(new Uint8Array(nonce))]);
}

/** Constant-length comparison of two byte strings (not secret; exact). */
export function sameBytes(a, b) {
  if (a.byteLength !== b.byteLength) return false;
  let diff = 0;
  for (let i = 0; i < a.byteLength; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
