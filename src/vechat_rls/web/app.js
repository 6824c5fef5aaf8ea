// app.js — the browser client's entry module and its start: the token, /me, the socket, settings,
// the conversation list, and the conversation that was open before a reload. Plain DOM, native ES
// modules, no build step; all user text goes through textContent. Each module wires its own
// listeners when it is first imported.

import { el } from "./dom.js";
import { state, storageKey } from "./state.js";
import { tokenClaims } from "./helpers.js";
import { showError } from "./errors.js";
import { api } from "./http.js";
import { takeToken, signOut } from "./sign-in.js";
import { loadConversations } from "./conversations.js";
import { openConversation } from "./open-conversation.js";
import { loadSeq, connect } from "./websocket.js";
import { applySettings } from "./settings.js";
import { organisationNameFrom, renderIdentity } from "./identity.js";
// Nothing else imports these two; they are here for the listeners they wire.
import "./contacts.js";
import "./message-search.js";

async function start() {
  state.token = takeToken();
  if (!state.token) {
    signOut("Open the sign-in link your organisation gave you.");
    return;
  }
  const claims = tokenClaims(state.token);
  if (claims && typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) {
    signOut("This sign-in link has expired. Ask for a new one.");
    return;
  }
  try {
    state.me = await api("GET", "/me");
  } catch (err) {
    if (!state.signedOut) {
      el.signedOut.hidden = false;
      el.signedOutReason.textContent = `Cannot sign in: ${err.detail || err.message}`;
    }
    return;
  }
  el.signedOut.hidden = true;
  el.app.hidden = false;
  el.layout.dataset.view = "list";
  state.organisationName = organisationNameFrom(claims);
  renderIdentity();
  el.presenceSelect.value = sessionStorage.getItem(storageKey("presence")) || "online";
  state.lastSeq = loadSeq();
  connect();
  applySettings();
  try {
    await loadConversations();
  } catch (err) {
    showError(err);
  }
  const open = Number(sessionStorage.getItem(storageKey("open")));
  if (open && state.conversations.has(open)) openConversation(open, { focus: false });
}

start();
