// The console's entry point: the language switch, sign-in (username,
// password, TOTP), a new operator's set-up (`#/setup`, `#/setup/{code}`),
// the session resumed from the HttpOnly cookie, and the sections each
// operator's roles allow (the server checks the roles again on every
// request). `body[data-ready]` says when the page has settled: "signin",
// "setup" or "console".

import { api, ApiError, hasRole, me, resumeSession, setSession } from "./api.js";
import { initApprovals, leaveApprovals, loadApprovals } from "./approvals.js";
import { initAudit, leaveAudit, loadActions } from "./audit.js";
import { initDesk, leaveDesk } from "./desk.js";
import { applyLanguage, currentLanguage, LANGUAGES, t } from "./i18n.js";
import { clearSetup, enterSetup, initSetup, readAddress, setupShown } from "./setup.js";
import { initStaff, leaveStaff, loadOperators } from "./staff.js";
import { initStatus, leaveStatus } from "./status.js";
import { $, busy, describeError, say } from "./ui.js";

function flash(text, kind = "") {
  const el = $("flash");
  el.textContent = text;
  el.className = "flash" + (kind ? " " + kind : "");
  el.hidden = !text;
}

function showByRole() {
  const op = me();
  for (const el of document.querySelectorAll("section.auth-only")) el.hidden = !op;
  for (const el of document.querySelectorAll("[data-roles]")) {
    el.hidden = !op || !hasRole(...el.dataset.roles.split(" "));
  }
}

function pageTitle() {
  const key = me() ? "brand" : setupShown() ? "setup.title" : "signin.title";
  document.title = `${t(key)} · cloudsign`;
}

/** Signed out: the sign-in or the set-up, whichever the address names. */
function showSignedOut() {
  const setup = setupShown();
  $("signin").hidden = setup;
  $("setup").hidden = !setup;
  if (setup) {
    enterSetup();
    return "setup";
  }
  clearSetup();
  const name = $("signin-username");
  (name.value ? $("signin-password") : name).focus({ preventScroll: true });
  return "signin";
}

async function enter() {
  delete document.body.dataset.ready;
  const op = me();
  $("who").textContent = op ? `${op.display_name} (${op.username})` : "";
  showByRole();
  pageTitle();
  if (op) {
    try {
      await loadOperators();
      await loadApprovals();
      await loadActions();
    } catch (e) {
      flash(describeError(e), "bad");
    }
    document.body.dataset.roles = op.roles.join(" ");
    document.body.dataset.ready = "console";
  } else {
    delete document.body.dataset.roles;
    document.body.dataset.ready = showSignedOut();
  }
}

/** The address changed: a view of the signed-out page, or an in-page anchor. */
async function route() {
  if (!readAddress()) return;
  if (!me()) {
    flash("");
    await enter();
  } else if (setupShown()) {
    flash(t("setup.signedin"), "bad");
  }
}

/** The new operator's account is active: on to the sign-in, their name filled in. */
async function setupDone(operator) {
  history.replaceState(null, "", "#/");
  readAddress();
  $("signin-username").value = operator.username;
  $("signin-password").value = "";
  $("signin-otp").value = "";
  flash(t("setup.done", null, { username: operator.username }), "ok");
  await enter();
}

function leave() {
  leaveDesk();
  leaveStatus();
  leaveStaff();
  leaveApprovals();
  leaveAudit();
  setSession(null);
}

function initSignIn() {
  const form = $("signin-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!form.reportValidity()) return;
    const status = form.querySelector(".status");
    await busy(form, async () => {
      const body = {
        username: $("signin-username").value.trim(),
        password: $("signin-password").value,
        otp: $("signin-otp").value.trim(),
      };
      // The password stays in the form only as long as the request takes.
      $("signin-password").value = "";
      $("signin-otp").value = "";
      let s;
      try {
        s = await api("POST", "/console/session", { body });
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) throw new Error(t("signin.refused"));
        throw e;
      }
      form.reset();
      say(status, "");
      flash("");
      setSession(s.csrf_token, s.operator);
      await enter();
    }, status);
  });
}

async function signOut() {
  try {
    await api("POST", "/operator/api/v1/sessions/logout");
  } catch {
    /* the session is over either way */
  }
  leave();
  flash("");
  await enter();
}

async function main() {
  const select = $("lang");
  select.value = currentLanguage();
  applyLanguage(select.value);
  select.addEventListener("change", () => {
    if (LANGUAGES.includes(select.value)) applyLanguage(select.value);
    pageTitle();
  });
  $("sign-out").addEventListener("click", signOut);
  document.addEventListener("sessionended", async () => {
    leave();
    flash(t("signin.ended"), "bad");
    await enter();
  });
  initSignIn();
  initSetup({ done: setupDone });
  initDesk();
  initStatus();
  initStaff();
  initApprovals();
  initAudit();
  readAddress();
  window.addEventListener("hashchange", route);
  await resumeSession();
  await enter();
  if (me() && setupShown()) flash(t("setup.signedin"), "bad");
}

main();
