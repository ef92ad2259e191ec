// The portal's entry point: hash routing between the views, the language
// switch, and the session resumed from the HttpOnly cookie.
//
// `#/activate/{code}` is the link on the registration desk's printout: it
// opens the enrolment with the code filled in (and takes the code out of
// the address bar and the history), for the citizen to confirm.

import { api, resumeSession, sessionScope, setSession, signedIn } from "./api.js";
import { enterAuditor, initAuditor } from "./auditor.js";
import { enterCabinet, initCabinet, stopCamera as stopCabinetCamera } from "./cabinet.js";
import { enterEnrol, initEnrol, stopCamera as stopEnrolCamera } from "./enrol.js";
import { applyLanguage, currentLanguage, LANGUAGES, t } from "./i18n.js";
import { initLogin } from "./login.js";
import { enterPhone, initPhone, leavePhone, resetPhone } from "./phone.js";
import { enterSign, initSign, stopCamera as stopSignCamera } from "./sign.js";
import { describeError, flash, showPendingFlash } from "./ui.js";
import { enterValidate, initValidate } from "./validate.js";

// `full`: only for a logged-in owner (an enrolment session finishes enrolling first).
const VIEWS = {
  home: { enter: null },
  login: { enter: null },
  enrol: { enter: enterEnrol },
  sign: { enter: enterSign, full: true },
  phone: { enter: enterPhone, full: true },
  cabinet: { enter: enterCabinet, full: true },
  auditor: { enter: enterAuditor },
  validate: { enter: enterValidate },
};

/** The view and its argument of the address: `#/activate/{code}` is enrolment. */
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
  return { name: head in VIEWS ? head : "home", arg: undefined };
}

async function route() {
  delete document.body.dataset.ready;
  const { name, arg } = parseHash();
  if (VIEWS[name].full && sessionScope() !== "full") {
    location.hash = signedIn() ? "#/enrol" : "#/login";
    return;
  }
  stopEnrolCamera();
  stopSignCamera();
  stopCabinetCamera();
  if (name !== "phone") leavePhone();
  showPendingFlash();
  for (const section of document.querySelectorAll("section[data-view]")) {
    section.hidden = section.dataset.view !== name;
  }
  for (const link of document.querySelectorAll(".top nav a")) {
    if (link.getAttribute("href") === `#/${name === "home" ? "" : name}`) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  const section = document.querySelector(`[data-view=${name}]`);
  document.title = `${section.querySelector("h1").textContent} · ${t("brand")}`;
  section.querySelector("h1").tabIndex = -1;
  section.querySelector("h1").focus({ preventScroll: true });
  document.body.dataset.current = name;
  try {
    await VIEWS[name].enter?.(arg);
  } catch (e) {
    flash(describeError(e), "bad");
  }
  document.body.dataset.ready = name;
}

async function logout() {
  // An unfinished enrolment cannot be resumed: its activation code is spent.
  if (sessionScope() === "enrolment" && !window.confirm(t("nav.logout.enrolment"))) return;
  try {
    await api("POST", "/portal/session/logout");
  } finally {
    setSession(null);
    resetPhone();
    location.hash = "#/";
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
    // Views drawn by script re-draw in the new language.
    const view = document.body.dataset.current;
    if (view === "cabinet" || view === "auditor") route();
  });
  document.getElementById("logout").addEventListener("click", logout);
  initEnrol();
  initSign();
  initPhone();
  initCabinet();
  initAuditor();
  initValidate();
  initLogin(() => (location.hash = "#/cabinet"));
  await resumeSession();
  window.addEventListener("hashchange", route);
  await route();
}

main();
