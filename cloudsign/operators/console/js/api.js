// The console's only way to the server: same-origin fetch with the operator
// session cookie (HttpOnly; this script never sees it) and the CSRF token in
// a header. The CSRF token lives in this module's memory only: never in
// localStorage, sessionStorage or the URL.

let csrf = null;
let operator = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || "unknown";
    this.reason = body.reason || null;
    this.retryAfter = null;
    this.body = body;
  }
}

export function setSession(token, who) {
  csrf = token || null;
  operator = csrf ? who : null;
  document.body.classList.toggle("signed-in", Boolean(csrf));
}

export const signedIn = () => csrf !== null;
export const me = () => operator;
export const hasRole = (...roles) => Boolean(operator && roles.some((r) => operator.roles.includes(r)));

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

/**
 * `{status, body}` of a request: JSON (`body` object), multipart (`form`
 * FormData) or nothing. A 202 is an action waiting for a second operator.
 */
export async function send(method, path, { body, form } = {}) {
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
    redirect: "error",
  });
  if (!resp.ok) {
    const error = new ApiError(resp.status, await problem(resp));
    error.retryAfter = resp.headers.get("Retry-After");
    if (resp.status === 401 && csrf) document.dispatchEvent(new CustomEvent("sessionended"));
    throw error;
  }
  return { status: resp.status, body: resp.status === 204 ? null : await resp.json() };
}

/** The body of a request (see `send`). */
export async function api(method, path, options) {
  return (await send(method, path, options)).body;
}

/** Ask whether the cookie is still a session (after a reload). */
export async function resumeSession() {
  try {
    const s = await api("GET", "/console/session");
    setSession(s.csrf_token, s.operator);
    return s.operator;
  } catch {
    setSession(null);
    return null;
  }
}
