// The app's service worker: the app shell (the page, its styles, icons and
// modules, and the portal's modules it imports) is cached when the worker is
// installed and served from that cache, so the app starts at once, even with
// no connection. Nothing else is ever cached: API answers (tokens, requests,
// documents, signatures) always go to the network, past this worker.
//
// Web Push (the subscription is made by js/push.js): a push for a new
// signing request shows a notification (who asks, and the verification
// code) and tells every open window of the app, which refreshes its inbox;
// tapping the notification opens the request in the app. A push carries no
// document and no hash: the app fetches and checks those itself.
//
// The server replaces SHELL_VERSION by a digest of every file below
// (mobile_api/webapp.py), so changing any of them installs a new worker with
// a new cache, and the old cache is deleted when it takes over.

const SHELL_VERSION = "__SHELL_VERSION__";
const CACHE = `cloudsign-app-${SHELL_VERSION}`;
const SHELL = [
  "/app/",
  "/app/app.css",
  "/app/manifest.webmanifest",
  "/app/icons/icon-192.png",
  "/app/icons/icon-512.png",
  "/app/js/api.js",
  "/app/js/approval.js",
  "/app/js/devices.js",
  "/app/js/enrol.js",
  "/app/js/face.js",
  "/app/js/factors.js",
  "/app/js/i18n.js",
  "/app/js/inbox.js",
  "/app/js/login.js",
  "/app/js/main.js",
  "/app/js/preview.js",
  "/app/js/push.js",
  "/app/js/qr.js",
  "/app/js/request.js",
  "/app/js/scan.js",
  "/app/js/sign.js",
  "/app/js/ui.js",
  "/app/js/webauthn.js",
  "/portal/static/js/api.js",
  "/portal/static/js/camera.js",
  "/portal/static/js/consents.js",
  "/portal/static/js/crypto.js",
  "/portal/static/js/facecheck.js",
  "/portal/static/js/i18n.js",
  "/portal/static/js/ui.js",
  "/portal/vendor/hash-wasm.js",
  "/portal/vendor/jsqr.js",
];
const SHELL_PATHS = new Set(SHELL);

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // Straight from the server, not from the browser's HTTP cache.
      await cache.addAll(SHELL.map((path) => new Request(path, { cache: "no-cache" })));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith("cloudsign-app-") && name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

/** The shell file a request asks for, or null for anything else. */
function shellPath(request) {
  if (request.method !== "GET") return null;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.search) return null;
  // The page itself, however it is opened (/app/, /app/index.html).
  if (request.mode === "navigate" && (url.pathname === "/app/" || url.pathname === "/app/index.html")) {
    return "/app/";
  }
  return SHELL_PATHS.has(url.pathname) ? url.pathname : null;
}

self.addEventListener("fetch", (event) => {
  const path = shellPath(event.request);
  if (path === null) return; // not ours: the network, uncached
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      const cached = await cache.match(path);
      if (cached) return cached;
      const fresh = await fetch(event.request);
      if (fresh.ok) await cache.put(path, fresh.clone());
      return fresh;
    })(),
  );
});

// -- Web Push ------------------------------------------------------------------------

const REQUEST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// The notification's words: the worker cannot read the app's language
// choice (kept in the page's storage), so it follows the browser's.
const WORDS = {
  kk: {
    title: "Қол қоюға сұрау: {requester}",
    body: "Растау коды {code}. Тексеріп, растау үшін қолданбаны ашыңыз.",
    other: "cloudsign: жаңа хабар. Қолданбаны ашыңыз.",
  },
  ru: {
    title: "Запрос на подпись: {requester}",
    body: "Код подтверждения {code}. Откройте приложение, чтобы проверить и подтвердить.",
    other: "cloudsign: новое сообщение. Откройте приложение.",
  },
  en: {
    title: "Signature request: {requester}",
    body: "Verification code {code}. Open the app to check and approve.",
    other: "cloudsign: something new. Open the app.",
  },
};

function words() {
  const langs = self.navigator.languages || [self.navigator.language || "en"];
  const lang = langs.map((l) => String(l).slice(0, 2).toLowerCase()).find((l) => l in WORDS);
  return WORDS[lang || "en"];
}

const fill = (text, values) => Object.entries(values).reduce((s, [k, v]) => s.replaceAll(`{${k}}`, v), text);

/** The push's message as the service sends it (mobile_api/requests.py), or null. */
function signingRequest(event) {
  let msg;
  try {
    msg = event.data ? event.data.json() : null;
  } catch {
    return null;
  }
  if (!msg || msg.type !== "signing-request" || !REQUEST_ID.test(String(msg.request_id))) return null;
  const code = String(msg.verification_code ?? "");
  return {
    type: "signing-request",
    request_id: msg.request_id,
    requester: String(msg.requester ?? "").slice(0, 200),
    verification_code: /^\d{4}$/.test(code) ? code : "",
  };
}

async function appWindows() {
  const all = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  return all.filter((c) => new URL(c.url).pathname.startsWith("/app/"));
}

self.addEventListener("push", (event) => {
  const msg = signingRequest(event);
  event.waitUntil(
    (async () => {
      const w = words();
      if (msg) {
        for (const client of await appWindows()) client.postMessage(msg);
      }
      // Every push shows a notification (a push that shows none is one the
      // browser may stop delivering); one per request, replaced if sent again.
      const title = msg ? fill(w.title, { requester: msg.requester }) : w.other;
      const options = {
        body: msg ? fill(w.body, { code: msg.verification_code }) : "",
        tag: msg ? `request-${msg.request_id}` : "cloudsign",
        icon: "/app/icons/icon-192.png",
        data: msg ? { request_id: msg.request_id } : {},
      };
      try {
        await self.registration.showNotification(title, options);
      } catch {
        // Notifications not allowed: the open app was told, the inbox has it.
      }
    })(),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const id = event.notification.data?.request_id;
  const valid = typeof id === "string" && REQUEST_ID.test(id);
  const hash = valid ? `#/request/${id}` : "#/inbox";
  event.waitUntil(
    (async () => {
      const [open] = await appWindows();
      if (open) {
        await open.focus();
        if (valid) open.postMessage({ type: "open-request", request_id: id });
        return;
      }
      await self.clients.openWindow(`/app/${hash}`);
    })(),
  );
});
