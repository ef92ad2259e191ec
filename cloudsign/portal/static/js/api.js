// The portal's only way to the server: same-origin fetch with the session
// cookie (HttpOnly; this script never sees it) and the CSRF token in a header.
// The CSRF token lives in this module's memory only.

let csrf = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || "unknown";
    this.reason = body.reason || null;
    this.body = body;
  }
}

export function setSession(token) {
  csrf = token;
  document.body.classList.toggle("signed-in", Boolean(token));
}

export const signedIn = () => csrf !== null;

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
  if (!resp.ok) throw new ApiError(resp.status, await problem(resp));
  if (raw) return resp;
  return resp.status === 204 ? null : resp.json();
}

/** Ask whether the cookie is still a session (after a reload). */
export async function resumeSession() {
  try {
    const s = await api("GET", "/portal/session");
    setSession(s.csrf_token);
    return s.owner_id ? s : null;
  } catch {
    setSession(null);
    return null;
  }
}
