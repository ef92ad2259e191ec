// The inbox: the signing requests waiting for this citizen's approval
// (started on another screen), refreshed while it is shown.

import { api } from "./api.js";
import { tf } from "./i18n.js";
import { $, busy, formatTime, say } from "./ui.js";

const POLL_MS = 15000;
let timer = null;

function item(req) {
  const li = document.createElement("li");
  const link = document.createElement("a");
  link.className = "request-item";
  link.href = `#/request/${encodeURIComponent(req.request_id)}`;
  link.dataset.request = req.request_id;
  const from = document.createElement("strong");
  from.textContent = req.requester;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = req.display_text.length > 140 ? req.display_text.slice(0, 139) + "…" : req.display_text;
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = `${tf("app.inbox.documents", { n: req.documents.length })} · ${tf("app.inbox.expires", { time: formatTime(req.expires_at) })}`;
  link.append(from, text, meta);
  li.append(link);
  return li;
}

async function load() {
  const { requests } = await api("GET", "/api/v1/device/requests");
  $("inbox-list").replaceChildren(...requests.map(item));
  $("inbox-empty").hidden = requests.length > 0;
  say($("inbox-status"), "");
}

export async function enterInbox() {
  stopInbox();
  await load();
  timer = setInterval(() => {
    if (document.visibilityState === "visible") load().catch(() => {});
  }, POLL_MS);
}

/** Load the list again now, if it is shown (a push said something new). */
export function refreshInbox() {
  if (timer) load().catch((e) => say($("inbox-status"), String(e.message || e), "bad"));
}

export function stopInbox() {
  clearInterval(timer);
  timer = null;
}

export function initInbox() {
  const button = $("inbox-refresh");
  button.addEventListener("click", () => busy(button, load, $("inbox-status")));
  document.addEventListener("visibilitychange", () => {
    if (timer && document.visibilityState === "visible") load().catch(() => {});
  });
  // Re-draw in the new language (the counts and dates are written by script).
  document.addEventListener("languagechange", () => {
    if (timer) load().catch((e) => say($("inbox-status"), String(e.message || e), "bad"));
  });
}
