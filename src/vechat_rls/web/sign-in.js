// sign-in.js — taking the token from the sign-in link (and out of the address bar), the paste-a-
// token form, and signing out (token, socket and blob URLs dropped).

import { el } from "./dom.js";
import { state } from "./state.js";

const TOKEN_KEY = "vechat.token";

export function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("access_token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("access_token");
    // The token leaves the address bar (and the history) at once.
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signOut(reason) {
  if (state.signedOut) return;
  state.signedOut = true;
  // The token, and this tab's cursor, open conversation and status with it.
  for (const name of Object.keys(sessionStorage)) if (name.startsWith("vechat.")) sessionStorage.removeItem(name);
  clearTimeout(state.wsReconnectTimer);
  clearInterval(state.pingTimer);
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close(1000);
    state.ws = null;
  }
  for (const url of state.blobUrls.values()) url.then((u) => URL.revokeObjectURL(u), () => {});
  state.blobUrls.clear();
  el.app.hidden = true;
  el.signedOut.hidden = false;
  el.signedOutReason.textContent = reason || "You are signed out. Open a sign-in link to continue.";
  document.title = "vechat";
}

el.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = el.tokenInput.value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  location.reload();
});

el.signOut.addEventListener("click", () => signOut("You signed out."));
