// The app's service worker: the app shell (the page, its styles, icons and
// modules, and the portal's modules it imports) is cached when the worker is
// installed and served from that cache, so the app starts at once, even with
// no connection. Nothing else is ever cached: API answers (tokens, requests,
// documents, signatures) always go to the network, past this worker.
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
  "/app/js/request.js",
  "/app/js/sign.js",
  "/app/js/ui.js",
  "/app/js/webauthn.js",
  "/portal/static/js/api.js",
  "/portal/static/js/camera.js",
  "/portal/static/js/crypto.js",
  "/portal/static/js/facecheck.js",
  "/portal/static/js/i18n.js",
  "/portal/static/js/ui.js",
  "/portal/vendor/hash-wasm.js",
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
