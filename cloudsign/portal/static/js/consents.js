// The consents of an enrolment (rule: the citizen's informed consent, in
// their language), for the portal and the app alike: whether some are still
// to accept, the texts shown with the SHA-256 of the very words shown
// (computed here, and sent back with the acceptance), and the acceptance.
// `api` is the caller's way to the server (the portal's cookie session, the
// app's Bearer one), `t` its dictionary.

import { hex, sha256 } from "./crypto.js";

/** Whether the account (`me`, as GET /api/v1/me answers) has yet to accept a current text. */
export async function consentsPending(api, me, lang) {
  const texts = await api("GET", `/api/v1/consent-texts?language=${lang}`);
  const accepted = (text) =>
    me.consents.some((c) => c.kind === text.kind && c.version === text.version);
  return !texts.every(accepted);
}

/** The texts in `lang`, each with its checkbox, drawn in `list`. */
export async function showConsents(api, t, lang, list) {
  const texts = await api("GET", `/api/v1/consent-texts?language=${lang}`);
  list.replaceChildren();
  list.dataset.language = lang;
  for (const text of texts) {
    // The hash sent back is the one of the words shown here, computed here.
    const digest = hex(await sha256(new TextEncoder().encode(text.text)));
    const box = document.createElement("div");
    box.className = "consent";
    const h = document.createElement("h3");
    h.textContent = t("consent." + text.kind, text.kind);
    const body = document.createElement("div");
    body.className = "text";
    body.tabIndex = 0;
    body.lang = text.language;
    body.setAttribute("role", "region");
    body.setAttribute("aria-label", h.textContent);
    body.textContent = text.text;
    const meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = `${t("consent.version")} ${text.version} · SHA-256 ${digest}`;
    const label = document.createElement("label");
    label.className = "choice";
    const check = document.createElement("input");
    check.type = "checkbox";
    check.required = true;
    check.name = "consent";
    Object.assign(check.dataset, {
      kind: text.kind,
      version: text.version,
      language: text.language,
      sha256: digest,
    });
    const span = document.createElement("span");
    span.textContent = t("consent.accept");
    label.append(check, " ", span);
    box.append(h, body, meta, label);
    list.append(box);
  }
}

/** Accept every text ticked in `form` (each as it was shown). */
export async function acceptConsents(api, form) {
  for (const check of form.querySelectorAll("input[name=consent]")) {
    const { kind, version, language, sha256: digest } = check.dataset;
    await api("POST", "/api/v1/me/consents", { body: { kind, version, sha256: digest, language } });
  }
}
