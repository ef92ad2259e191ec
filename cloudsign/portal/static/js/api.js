// The portal's only way to the server: same-origin fetch with the session
// cookie (HttpOnly; this script never sees it) and the CSRF token in a header.
// The CSRF token and the session's scope live in this module's memory only.

let csrf = null;
let scope = null;

export class ApiError extends Error {
  constructor(status, body, retryAfter = null) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || "unknown";
    this.reason = body.reason || null;
    // Seconds, from Retry-After (423 locked, 429 rate limited).
    this.retryAfter = retryAfter;
    this.body = body;
  }
}

/** `scope` is "enrolment" (an activation code was redeemed) or "full" (a login,
 *  or an enrolment that created its key). */
export function setSession(token, sessionScope = token ? "full" : null) {
  csrf = token || null;
  scope = csrf ? sessionScope : null;
  document.body.classList.toggle("signed-in", Boolean(csrf));
  document.body.classList.toggle("full-session", scope === "full");
}

export const signedIn = () => csrf !== null;
export const sessionScope = () => scope;

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
  const at = Date.parse(value); // the HTTP-date form
  return Number.isNaN(at) ? null : Math.max(0, Math.round((at - Date.now()) / 1000));
}

/** JSON (`body` object), multipart (`form` FormData) or nothing; `raw` returns the Response. */
export async function api(method, path, { body, form, raw } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
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
    credentials: "same-origin",
    cache: "no-store",
  });
  if (!resp.ok) throw new ApiError(resp.status, await problem(resp), retryAfter(resp));
  if (raw) return resp;
  return resp.status === 204 ? null : resp.json();
}

/** Ask whether the cookie is still a session (after a reload, or after the
 *  server changed its scope). */
export async function resumeSession() {
  try {
    const s = await api("GET", "/portal/session");
    setSession(s.csrf_token, s.scope);
    return s.owner_id ? s : null;
  } catch {
    setSession(null);
    return null;
  }
}
