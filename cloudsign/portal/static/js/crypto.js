// What the citizen's computer does with the key password, as in
// device_client/device.py:
//   1. K_pw = Argon2id(password, salt) with the owner's published parameters;
//   2. ECDH P-256 with the one-time HSM transport key -> Z;
//      KEK = AES-256-ECB_Z(ctx), ctx = SHA-256("cloudsign/transport/v1" 0 id 0 point);
//   3. AES-KW(KEK, K_pw) goes to the server with the device's public point.
// The password and K_pw stay in local variables of this module and are
// overwritten as soon as the wrap exists.

import { argon2id } from "/portal/vendor/hash-wasm.js";

const subtle = crypto.subtle;
const enc = new TextEncoder();
const LABEL = enc.encode("cloudsign/transport/v1");

export function b64encode(bytes) {
  let s = "";
  const view = new Uint8Array(bytes);
  for (let i = 0; i < view.length; i += 0x8000) {
    s += String.fromCharCode(...view.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

export function b64decode(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export const hex = (bytes) =>
  Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");

export function unhex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
}

export async function sha256(...parts) {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const buf = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    buf.set(new Uint8Array(p.buffer ?? p, p.byteOffset ?? 0, p.byteLength), at);
    at += p.byteLength;
  }
  return new Uint8Array(await subtle.digest("SHA-256", buf));
}

/** K_pw: Argon2id in WebAssembly with the server's per-owner parameters. */
export async function derivePasswordKey(password, params) {
  if (params.algorithm !== "argon2id") throw new Error("unsupported KDF " + params.algorithm);
  return argon2id({
    password,
    salt: b64decode(params.salt),
    iterations: params.time_cost,
    memorySize: params.memory_kib,
    parallelism: params.parallelism,
    hashLength: params.hash_len || 32,
    outputType: "binary",
  });
}

/** KEK = AES-256-ECB_Z over the two 16-byte halves of ctx; WebCrypto has no
 *  ECB, and one block of CBC under a zero IV is the same permutation. */
async function transportKek(z, ctx) {
  const key = await subtle.importKey("raw", z, "AES-CBC", false, ["encrypt"]);
  const iv = new Uint8Array(16);
  const kek = new Uint8Array(32);
  for (const half of [0, 1]) {
    const block = ctx.subarray(16 * half, 16 * half + 16);
    const out = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv }, key, block));
    kek.set(out.subarray(0, 16), 16 * half);
  }
  return subtle.importKey("raw", kek, "AES-KW", false, ["wrapKey"]);
}

/** Wrap K_pw for a one-time HSM key (`transport` as POST /me/transport-keys answers). */
export async function wrapForTransport(kpw, transport) {
  const server = await subtle.importKey(
    "spki",
    b64decode(transport.public_key),
    { name: "ECDH", namedCurve: "P-256" },
    false,
    [],
  );
  const device = await subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, [
    "deriveBits",
  ]);
  const z = new Uint8Array(
    await subtle.deriveBits({ name: "ECDH", public: server }, device.privateKey, 256),
  );
  const point = new Uint8Array(await subtle.exportKey("raw", device.publicKey));
  const id = enc.encode(transport.transport_key_id);
  const ctx = await sha256(LABEL, new Uint8Array([0]), id, new Uint8Array([0]), point);
  const kek = await transportKek(z, ctx);
  z.fill(0);
  const inner = await subtle.importKey("raw", kpw, "AES-GCM", true, ["encrypt"]);
  const wrapped = await subtle.wrapKey("raw", inner, kek, "AES-KW");
  return {
    transport_key_id: transport.transport_key_id,
    device_public_key: b64encode(point),
    wrapped_key: b64encode(wrapped),
  };
}

/** Argon2id here, then the wrap for `transport`; K_pw is wiped before returning. */
async function wrapPassword(password, params, transport) {
  const kpw = await derivePasswordKey(password, params);
  try {
    return await wrapForTransport(kpw, transport);
  } finally {
    kpw.fill(0);
  }
}

/** The whole device side for a signed-in owner: the key parameters and a
 *  one-time key for `purpose` from the server, Argon2id and the wrap here.
 *  Returns only the wrap. */
export async function passwordKeyFor(api, password, purpose) {
  const params = await api("GET", "/api/v1/me/key-params");
  const transport = await api("POST", "/api/v1/me/transport-keys", { body: { purpose } });
  return wrapPassword(password, params, transport);
}

/** The password proof of a login: the login challenge carries both the key
 *  parameters and the one-time key (the same for an IIN with no account). */
export function loginPasswordKey(password, challenge) {
  return wrapPassword(password, challenge.key_params, challenge);
}
