// Logging in on the phone: the IIN, this phone's assertion over the login
// challenge's device challenge, and the key password wrapped for the
// challenge's one-time HSM key (the portal's crypto.js). The service answers
// a challenge for every IIN, known or not, and one refusal for every reason.

import { api, ApiError, setSession } from "./api.js";
import { t } from "./i18n.js";
import { $, busy, isLimit, say, takeValue } from "./ui.js";
import { assert, thisDevice } from "./webauthn.js";
import { loginPasswordKey } from "/portal/static/js/crypto.js";

async function onLogin(ev, done) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const status = form.querySelector(":scope > .status");
  if (!form.reportValidity()) return;
  await busy(form, async () => {
    const iin = $("login-iin").value.trim();
    let password = takeValue($("login-password"));
    try {
      const challenge = await api("POST", "/api/v1/sessions/challenge", { body: { iin } });
      say(status, t("app.crypto.deriving"));
      let wrapped;
      try {
        wrapped = await loginPasswordKey(password, challenge);
      } finally {
        password = null;
      }
      const dc = challenge.device_challenge;
      if (!dc) throw new Error(t("app.login.refused"));
      const known = thisDevice();
      say(status, t("app.phone.confirm"));
      const credential = await assert({
        challenge: dc.challenge,
        userVerification: "required",
        allowCredentials: known?.credential_id ? [{ type: "public-key", id: known.credential_id }] : [],
      });
      const answer = await api("POST", "/api/v1/sessions", {
        body: { iin, device: { challenge_id: dc.challenge_id, credential }, password_key: wrapped },
      });
      setSession(answer, "full");
    } catch (e) {
      if (e instanceof ApiError && !isLimit(e) && (e.status === 401 || e.status === 403)) {
        throw new Error(t("app.login.refused"));
      }
      throw e;
    }
    say(status, "");
    done();
  }, status);
}

export function initLogin(done) {
  $("login-form").addEventListener("submit", (ev) => onLogin(ev, done));
}
