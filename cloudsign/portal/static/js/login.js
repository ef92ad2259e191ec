// Log in again later: IIN + a TOTP code; the server answers with a cookie.

import { api, setSession } from "./api.js";
import { busy } from "./ui.js";

export function initLogin(onLoggedIn) {
  const form = document.getElementById("login-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!form.reportValidity()) return;
    const status = form.querySelector(".status");
    const data = Object.fromEntries(new FormData(form));
    await busy(form, async () => {
      const s = await api("POST", "/portal/session/login", {
        body: { iin: data.iin.trim(), otp: data.otp.trim() },
      });
      form.reset();
      setSession(s.csrf_token);
      onLoggedIn();
    }, status);
  });
}
