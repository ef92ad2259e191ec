// Web Push: a new signing request reaches this phone at once. The service
// worker subscribes with the service's VAPID key (`GET /api/v1/push/key`) and
// the subscription is registered for this phone's bound device
// (`PUT /api/v1/me/devices/{id}/push`); sw.js shows the notification and
// tells the open app. Push is a hint only: with no push service (a browser
// without one, no network, the citizen said no), nothing is said and the
// inbox, polled while shown, has every request all the same.
// `body[data-push]` says how it went ("on" or "off"), for people and tests.

import { api, ownerId, sessionScope } from "./api.js";
import { b64url, thisDevice, unb64url } from "./webauthn.js";

let done = null; // the owner and device a subscription was tried for

async function subscribe(device) {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) return false;
  const registration = await navigator.serviceWorker.getRegistration("/app/");
  if (!registration) return false;
  const ready = await navigator.serviceWorker.ready;
  const { public_key: key } = await api("GET", "/api/v1/push/key");
  let sub = await ready.pushManager.getSubscription();
  const current = sub?.options?.applicationServerKey;
  if (sub && (!current || b64url(current) !== key)) {
    await sub.unsubscribe(); // made for another key: the service could not reach it
    sub = null;
  }
  if (!sub) {
    sub = await ready.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: unb64url(key) });
  }
  const { endpoint, keys } = sub.toJSON();
  await api("PUT", `/api/v1/me/devices/${encodeURIComponent(device.device_id)}/push`, {
    body: { endpoint, keys: { p256dh: keys.p256dh, auth: keys.auth } },
  });
  return true;
}

/** Subscribe this phone once per signed-in owner, if it is a bound device; never throws. */
export async function enablePush() {
  const device = thisDevice();
  if (sessionScope() !== "full" || !device?.device_id) return;
  const who = `${ownerId()}/${device.device_id}`;
  if (done === who) return;
  done = who;
  let on = false;
  try {
    on = await subscribe(device);
  } catch (e) {
    // No push service here: the inbox is the way requests arrive.
    console.info("web push is not available:", e?.name || e);
  }
  document.body.dataset.push = on ? "on" : "off";
}
