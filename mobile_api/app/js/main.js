// The app's entry point: hash routing between the screens, the language
// switch, the session (kept by api.js for this tab), and the service worker
// that caches the app shell.
//
// `#/activate/{code}` opens the enrolment with the code filled in (and takes
// the code out of the address bar and the history), as the portal does.
//
// A signed-in owner on a bound phone subscribes to Web Push (push.js); the
// service worker's word of a new request refreshes the inbox and says who
// asks, and a tapped notification opens the request.

import { api, clearSession, sessionScope, signedIn, whenExpired } from "./api.js";
import { enterDevices, initDevices, stopDevices } from "./devices.js";
import { enterEnrol, initEnrol, stopEnrol } from "./enrol.js";
import { stopAllCameras } from "./face.js";
import { applyLanguage, currentLanguage, LANGUAGES, t, tf } from "./i18n.js";
import { enterInbox, initInbox, refreshInbox, stopInbox } from "./inbox.js";
import { initLogin } from "./login.js";
import { enablePush, initPush } from "./push.js";
import { enterRequest, initRequest, stopRequest } from "./request.js";
import { enterScan, initScan, stopScan } from "./scan.js";
import { enterSign, initSign, stopSign } from "./sign.js";
import { describeError, flash } from "./ui.js";

// `full`: only for a logged-in owner (an enrolment session finishes enrolling first).
const VIEWS = {
  home: { enter: null },
  login: { enter: null },
  enrol: { enter: enterEnrol },
  inbox: { enter: enterInbox, full: true },
  request: { enter: enterRequest, full: true },
  scan: { enter: enterScan, full: true },
  sign: { enter: enterSign, full: true },
  devices: { enter: enterDevices, full: true },
};

let pendingFlash = null;
// Push is set up once the worker's registration was tried (it needs the worker).
let workerTried = false;

function parseHash() {
  const path = location.hash.replace(/^#\/?/, "");
  const [head, ...rest] = path.split("/");
  if (head === "activate" && rest.length) {
    // The code is spent once redeemed; it should not linger in the history either.
    history.replaceState(null, "", "#/enrol");
    let code = rest.join("/");
    try {
      code = decodeURIComponent(code);
    } catch {
      /* not %-encoded after all: the form says whether it is a code */
    }
    return { name: "enrol", arg: { code } };
  }
  if (head === "request" && rest.length === 1 && rest[0]) {
    return { name: "request", arg: decodeURIComponent(rest[0]) };
  }
  return { name: head in VIEWS && head !== "request" ? head : "home", arg: undefined };
}

async function route() {
  delete document.body.dataset.ready;
  const { name, arg } = parseHash();
  if (VIEWS[name].full && sessionScope() !== "full") {
    location.hash = signedIn() ? "#/enrol" : "#/login";
    return;
  }
  if (name === "home" && sessionScope() === "full") {
    location.hash = "#/inbox";
    return;
  }
  stopAllCameras();
  stopScan();
  stopInbox();
  stopEnrol();
  stopSign();
  stopRequest();
  stopDevices();
  flash(pendingFlash?.text || "", pendingFlash?.kind || "");
  pendingFlash = null;
  for (const section of document.querySelectorAll("section[data-view]")) {
    section.hidden = section.dataset.view !== name;
  }
  for (const tab of document.querySelectorAll(".tabs a")) {
    const here = tab.dataset.tab === name || (name === "request" && tab.dataset.tab === "inbox");
    if (here) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  const h1 = document.querySelector(`[data-view=${name}] h1`);
  document.title = `${h1.textContent} · ${t("brand")}`;
  h1.tabIndex = -1;
  h1.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  document.body.dataset.current = name;
  try {
    await VIEWS[name].enter?.(arg);
  } catch (e) {
    flash(describeError(e), "bad");
  }
  document.body.dataset.ready = name;
  if (workerTried && sessionScope() === "full") enablePush();
}

async function logout() {
  // An unfinished enrolment cannot be resumed: its activation code is spent.
  if (sessionScope() === "enrolment" && !window.confirm(t("nav.logout.enrolment"))) return;
  try {
    // The token dies on the server too, not only in this tab.
    await api("DELETE", "/api/v1/sessions/current");
  } catch {
    // Already expired or revoked: forgetting it is all that is left.
  }
  clearSession();
  location.hash = "#/";
}

async function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.addEventListener("message", onWorkerMessage);
  navigator.serviceWorker.startMessages();
  try {
    await navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" });
  } catch (e) {
    // The app works without it (no offline shell); say why in the console only.
    console.warn("service worker not registered:", e);
  }
}

const REQUEST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What the service worker says: a push for a new request, or a tapped notification. */
function onWorkerMessage(ev) {
  const msg = ev.data;
  if (!msg || typeof msg !== "object" || !REQUEST_ID.test(String(msg.request_id))) return;
  if (sessionScope() !== "full") return;
  if (msg.type === "open-request") {
    location.hash = `#/request/${msg.request_id}`;
  } else if (msg.type === "signing-request") {
    const values = { requester: String(msg.requester || "").slice(0, 200), code: String(msg.verification_code || "") };
    flash(tf("app.push.new", values));
    document.body.dataset.pushed = msg.request_id;
    refreshInbox();
  }
}

async function main() {
  const select = document.getElementById("lang");
  select.value = currentLanguage();
  applyLanguage(select.value);
  select.addEventListener("change", () => {
    if (LANGUAGES.includes(select.value)) applyLanguage(select.value);
    const h1 = document.querySelector("[data-view]:not([hidden]) h1");
    if (h1) document.title = `${h1.textContent} · ${t("brand")}`;
  });
  document.getElementById("logout").addEventListener("click", logout);
  whenExpired(() => {
    pendingFlash = { text: t("app.session.expired"), kind: "bad" };
    location.hash = "#/login";
  });
  initEnrol();
  initLogin(() => (location.hash = "#/inbox"));
  initInbox();
  initRequest();
  initScan();
  initPush();
  initSign();
  initDevices();
  window.addEventListener("hashchange", route);
  await route();
  await registerWorker();
  workerTried = true;
  if (sessionScope() === "full") enablePush();
}

main();
