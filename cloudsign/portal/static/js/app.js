// The portal's entry point: hash routing between the views, the language
// switch, and the session resumed from the HttpOnly cookie.

import { api, resumeSession, setSession, signedIn } from "./api.js";
import { enterAuditor, initAuditor } from "./auditor.js";
import { enterCabinet, initCabinet, stopCamera as stopCabinetCamera } from "./cabinet.js";
import { enterEnrol, initEnrol, stopCamera as stopEnrolCamera } from "./enrol.js";
import { applyLanguage, currentLanguage, LANGUAGES, t } from "./i18n.js";
import { initLogin } from "./login.js";
import { enterSign, initSign, stopCamera as stopSignCamera } from "./sign.js";
import { describeError } from "./ui.js";

const VIEWS = {
  home: { enter: null },
  login: { enter: null },
  enrol: { enter: enterEnrol },
  sign: { enter: enterSign, auth: true },
  cabinet: { enter: enterCabinet, auth: true },
  auditor: { enter: enterAuditor },
};

function flash(text, kind = "") {
  const el = document.getElementById("flash");
  el.textContent = text;
  el.className = "flash" + (kind ? " " + kind : "");
  el.hidden = !text;
}

async function route() {
  delete document.body.dataset.ready;
  let name = location.hash.replace(/^#\/?/, "") || "home";
  if (!(name in VIEWS)) name = "home";
  if (VIEWS[name].auth && !signedIn()) {
    location.hash = "#/login";
    return;
  }
  stopEnrolCamera();
  stopSignCamera();
  stopCabinetCamera();
  flash("");
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
    await VIEWS[name].enter?.();
  } catch (e) {
    flash(describeError(e), "bad");
  }
  document.body.dataset.ready = name;
}

async function logout() {
  try {
    await api("POST", "/portal/session/logout");
  } finally {
    setSession(null);
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
  initCabinet();
  initAuditor();
  initLogin(() => (location.hash = "#/cabinet"));
  await resumeSession();
  window.addEventListener("hashchange", route);
  await route();
}

main();
