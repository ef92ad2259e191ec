// This phone as a WebAuthn platform authenticator: the server's options
// (JSON, binary fields in base64url) turned into what navigator.credentials
// takes, and the credential turned back into the JSON the server reads (the
// fields of PublicKeyCredential.toJSON() the service accepts, no others).
// The phone's own unlock (screen lock, fingerprint) is the user verification.

import { t } from "./i18n.js";

export function b64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function unb64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const s = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const descriptor = (c) => ({ ...c, id: unb64url(c.id) });

export function creationOptions(json) {
  return {
    ...json,
    challenge: unb64url(json.challenge),
    user: { ...json.user, id: unb64url(json.user.id) },
    excludeCredentials: (json.excludeCredentials || []).map(descriptor),
  };
}

export function requestOptions(json) {
  return {
    ...json,
    challenge: unb64url(json.challenge),
    allowCredentials: (json.allowCredentials || []).map(descriptor),
  };
}

function common(cred) {
  return {
    id: cred.id,
    rawId: b64url(cred.rawId),
    type: cred.type,
    ...(cred.authenticatorAttachment ? { authenticatorAttachment: cred.authenticatorAttachment } : {}),
    clientExtensionResults: {},
  };
}

export function registrationJSON(cred) {
  const r = cred.response;
  const response = {
    clientDataJSON: b64url(r.clientDataJSON),
    attestationObject: b64url(r.attestationObject),
  };
  const transports = typeof r.getTransports === "function" ? r.getTransports() : null;
  if (transports?.length) response.transports = transports;
  return { ...common(cred), response };
}

export function assertionJSON(cred) {
  const r = cred.response;
  const response = {
    clientDataJSON: b64url(r.clientDataJSON),
    authenticatorData: b64url(r.authenticatorData),
    signature: b64url(r.signature),
  };
  if (r.userHandle && r.userHandle.byteLength) response.userHandle = b64url(r.userHandle);
  return { ...common(cred), response };
}

function supported() {
  if (!window.PublicKeyCredential || !navigator.credentials) throw new Error(t("app.phone.unsupported"));
}

/** The browser's refusal (cancelled, timed out, no credential) in the citizen's words. */
function refused(e) {
  if (e && (e.name === "NotAllowedError" || e.name === "InvalidStateError" || e.name === "AbortError")) {
    return new Error(t("app.phone.refused"));
  }
  return e;
}

/** Register this phone: the credential as JSON for POST /api/v1/me/devices. */
export async function register(options) {
  supported();
  try {
    return registrationJSON(await navigator.credentials.create({ publicKey: creationOptions(options) }));
  } catch (e) {
    throw refused(e);
  }
}

/** An assertion of this phone over `options.challenge`, as JSON. */
export async function assert(options) {
  supported();
  try {
    return assertionJSON(await navigator.credentials.get({ publicKey: requestOptions(options) }));
  } catch (e) {
    throw refused(e);
  }
}

// What the app remembers of the phone's own binding (no secret: the
// credential's id and the device's id and name), so the device list can
// say "this phone" and the login can name the credential to use.
const DEVICE_KEY = "cloudsign.app.device";

export function rememberDevice(device, credentialId) {
  try {
    localStorage.setItem(
      DEVICE_KEY,
      JSON.stringify({ device_id: device.device_id, name: device.name, credential_id: credentialId }),
    );
  } catch {
    /* not remembered: the login still works with a discoverable credential */
  }
}

export function thisDevice() {
  try {
    return JSON.parse(localStorage.getItem(DEVICE_KEY) || "null");
  } catch {
    return null;
  }
}

export function forgetDevice() {
  try {
    localStorage.removeItem(DEVICE_KEY);
  } catch {
    /* nothing kept */
  }
}
