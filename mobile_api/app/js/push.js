// Web Push: a new signing request reaches this phone at once. The service
// worker subscribes with the service's VAPID key (`GET /api/v1/push/key`) and
// the subscription is registered for this phone's bound device
// (`PUT /api/v1/me/devices/{id}/push`); sw.js shows the notification and
// tells the open app. Push is a hint only: with no push service (a browser
// without one, no network, the citizen said no), nothing is said and the
// inbox, polled while shown, has every request all the same.
//
// Notifications need the citizen's permission. Once given, the phone
// subscribes by itself whenever a bound phone's owner is signed in; until
// then the inbox offers a button that asks (a browser asks only on a tap).
// `body[data-push]` says where it stands ("on", "off": tried, no push
// service; "ask": the offer is shown; "denied"), for people and tests.

import { api, ownerId, sessionScope } from "./api.js";
import { $, busy } from "./ui.js";
import { b64url, thisDevice, unb64url } from "./webauthn.js";

let done = null; // the owner and device a subscription was tried for

const supported = () => "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;

function state(value) {
  document.body.dataset.push = value;
  const offer = $("push-offer");
  if (offer) offer.hidden = value !== "ask";
}

async function subscribe(device) {
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

/** Subscribe this phone once per signed-in owner, if it is a bound device
 *  and notifications are allowed; never throws. */
export async function enablePush() {
  const device = thisDevice();
  if (!supported() || sessionScope() !== "full" || !device?.device_id) return;
  // No worker (not registered, or blocked): no push, and nothing to offer.
  const registration = await navigator.serviceWorker.getRegistration("/app/").catch(() => null);
  if (!registration) return state("off");
  if (Notification.permission !== "granted") {
    state(Notification.permission === "denied" ? "denied" : "ask");
    return;
  }
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
  state(on ? "on" : "off");
}

export function initPush() {
  const button = $("push-enable");
  button.addEventListener("click", () =>
    busy(button, async () => {
      try {
        await Notification.requestPermission();
      } catch {
        /* an old browser's callback form, or none: the permission says */
      }
      await enablePush();
    }),
  );
}
