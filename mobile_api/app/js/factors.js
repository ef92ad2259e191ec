// The two factors the app adds to a face check, for a signed-in owner: the
// key password (Argon2id and the wrap for a one-time HSM key, the portal's
// crypto.js over the app's session) and an assertion of this phone over a
// one-time challenge for one purpose.

import { api } from "./api.js";
import { assert } from "./webauthn.js";
import { passwordKeyFor } from "/portal/static/js/crypto.js";

/** `purpose`: "credential.create" (a new key) or "authorize" (everything else). */
export const passwordKey = (password, purpose) => passwordKeyFor(api, password, purpose);

/** `{challenge_id, credential}` for the `device` field: purpose "enrol" or "authorize". */
export async function deviceProof(purpose) {
  const issued = await api("POST", "/api/v1/me/devices/challenge", { body: { purpose } });
  return { challenge_id: issued.challenge_id, credential: await assert(issued.options) };
}
