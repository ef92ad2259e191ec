// Logging in: the IIN, a TOTP code and the key password. The password never
// leaves this computer: the login challenge names the Argon2id parameters
// and a one-time HSM key, K_pw is derived here and only its wrap is sent.
// The challenge answers alike for an IIN with no account, and every refusal
// reads the same, so the page tells no one whether an IIN is a customer.

import { api, ApiError, setSession } from "./api.js";
import { loginPasswordKey } from "./crypto.js";
import { t } from "./i18n.js";
import { busy, say, takeValue } from "./ui.js";

const $ = (id) => document.getElementById(id);

export function initLogin(onLoggedIn) {
  const form = $("login-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!form.reportValidity()) return;
    const status = form.querySelector(".status");
    const iin = $("login-iin").value.trim();
    await busy(form, async () => {
      let password = takeValue($("login-password"));
      const otp = takeValue($("login-otp")).trim();
      say(status, t("crypto.deriving"));
      try {
        const challenge = await api("POST", "/portal/session/challenge", { body: { iin } });
        const passwordKey = await loginPasswordKey(password, challenge);
        password = null;
        const s = await api("POST", "/portal/session/login", {
          body: { iin, otp, password_key: passwordKey },
        });
        setSession(s.csrf_token, "full");
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) throw new Error(t("login.refused"));
        throw e;
      } finally {
        password = null;
      }
      form.reset();
      say(status, "");
      onLoggedIn();
    }, status);
  });
}
