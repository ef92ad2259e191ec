// The app's only way to the server: same-origin fetch with the session's
// access token as `Authorization: Bearer`. The token lives in this module's
// memory and in sessionStorage (this tab only, gone when it closes, so a
// reload keeps the session); never in localStorage, a cookie or the URL.
// Errors are the portal's ApiError, so the portal's wording of them
// (describeError in /portal/static/js/ui.js) works here too.

import { ApiError } from "/portal/static/js/api.js";

export { ApiError };

const STORE_KEY = "cloudsign.app.session";
let session = restore();

function restore() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
    if (saved && typeof saved.token === "string" && typeof saved.scope === "string") return saved;
  } catch {
    /* storage disabled or garbled: no session */
  }
  return null;
}

function reflect() {
  document.body.classList.toggle("signed-in", session !== null);
  document.body.classList.toggle("full-session", session?.scope === "full");
}

/** Keep a session (`{access_token, owner_id}` as the server answers, and its scope). */
export function setSession(answer, scope) {
  session = { token: answer.access_token, owner: answer.owner_id, scope };
  try {
    sessionStorage.setItem(STORE_KEY, JSON.stringify(session));
  } catch {
    /* memory only */
  }
  reflect();
}

/** The same token, now of another scope (an enrolment that created its key is a full session). */
export function setScope(scope) {
  if (session) setSession({ access_token: session.token, owner_id: session.owner }, scope);
}

export function clearSession() {
  session = null;
  try {
    sessionStorage.removeItem(STORE_KEY);
  } catch {
    /* nothing kept */
  }
  reflect();
}

export const signedIn = () => session !== null;
export const sessionScope = () => session?.scope ?? null;
export const ownerId = () => session?.owner ?? null;

reflect();

async function problem(resp) {
  const type = resp.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      return await resp.json();
    } catch {
      /* fall through */
    }
  }
  return { detail: resp.statusText };
}

function retryAfter(resp) {
  const value = resp.headers.get("Retry-After");
  if (value === null) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, Math.round(seconds));
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.round((at - Date.now()) / 1000));
}

/** Called when the server no longer knows the token (expired, or logged out elsewhere). */
let onExpired = null;
export function whenExpired(fn) {
  onExpired = fn;
}

/** JSON (`body`), multipart (`form`) or nothing; `raw` returns the Response. */
export async function api(method, path, { body, form, raw } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (session) headers.Authorization = `Bearer ${session.token}`;
  let payload;
  if (form) {
    payload = form;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const resp = await fetch(path, {
    method,
    headers,
    body: payload,
    credentials: "omit",
    cache: "no-store",
  });
  if (!resp.ok) {
    const error = new ApiError(resp.status, await problem(resp), retryAfter(resp));
    if (resp.status === 401 && session && !path.startsWith("/api/v1/sessions")) {
      clearSession();
      onExpired?.();
    }
    throw error;
  }
  if (raw) return resp;
  return resp.status === 204 ? null : resp.json();
}
