// The console's shell: who is signed in, and which view shows (#/ is the
// channel list, #/channel/NAME a channel). The credentials live in this
// module's memory, and in sessionStorage only when the user asks for it;
// they are checked by a signed ListLiveChannel before anything is kept.

import { Api } from "./api.js";
import { signInView } from "./views/signin.js";
import { channelsView } from "./views/channels.js";
import { channelView } from "./views/channel.js";

const STORE_KEY = "livebucket-console";
let session = null;
let stopView = null;

async function signIn(creds, remember) {
  const api = new Api(creds);
  // Throws an ApiError (wrong secret, key not allowed on the bucket) before
  // anything is kept.
  await api.listChannels();
  session = { api, creds };
  if (remember) sessionStorage.setItem(STORE_KEY, JSON.stringify(creds));
  else sessionStorage.removeItem(STORE_KEY);
}

function signOut() {
  session = null;
  sessionStorage.removeItem(STORE_KEY);
  if (location.hash !== "#/") location.hash = "#/";
  else route();
}

function route() {
  if (stopView) stopView();
  stopView = null;
  const main = document.getElementById("main");
  main.replaceChildren();
  const who = document.getElementById("who");
  const out = document.getElementById("signout");
  who.hidden = out.hidden = !session;
  if (!session) {
    stopView = signInView(main, async (creds, remember) => {
      await signIn(creds, remember);
      route();
    });
    return;
  }
  who.textContent = `${session.creds.keyId} · bucket ${session.creds.bucket}`;
  const m = location.hash.match(/^#\/channel\/([^/]+)$/);
  stopView = m
    ? channelView(main, session.api, decodeURIComponent(m[1]))
    : channelsView(main, session.api);
  const heading = main.querySelector("h2");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}

async function start() {
  document.getElementById("signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  const kept = sessionStorage.getItem(STORE_KEY);
  if (kept) {
    try {
      await signIn(JSON.parse(kept), true);
    } catch {
      sessionStorage.removeItem(STORE_KEY);
    }
  }
  route();
}

start();
