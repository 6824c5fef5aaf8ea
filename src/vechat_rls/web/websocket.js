// websocket.js — the live connection: resuming with `since`, reconnecting with jittered backoff,
// keep-alive pings, and handing each frame to the module that owns it.

import { el } from "./dom.js";
import { state, storageKey } from "./state.js";
import { showError } from "./errors.js";
import { API } from "./http.js";
import { signOut } from "./sign-in.js";
import { applyPresence } from "./presence.js";
import { loadConversations, applyConversation } from "./conversations.js";
import { openConversation, closeConversation } from "./open-conversation.js";
import { applyMessage, applyRead } from "./messages.js";
import { applyTyping } from "./typing.js";

const PING_MS = 25000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30000;

export function loadSeq() {
  const value = sessionStorage.getItem(storageKey("seq"));
  return value === null ? null : Number(value);
}

function saveSeq(seq) {
  state.lastSeq = seq;
  sessionStorage.setItem(storageKey("seq"), String(seq));
}

function setConnection(kind, text) {
  el.connection.dataset.state = kind;
  el.connection.textContent = text;
}

export function wsSend(frame) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify(frame));
  return true;
}

export function connect() {
  if (state.signedOut) return;
  const query = new URLSearchParams({ access_token: state.token });
  const since = state.lastSeq;
  if (since !== null) query.set("since", String(since));
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let ws;
  try {
    ws = new WebSocket(`${scheme}://${location.host}${API}/ws?${query}`);
  } catch {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  setConnection("connecting", state.wsAttempts ? "Reconnecting…" : "Connecting…");
  ws.onopen = () => {
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(() => wsSend({ type: "ping" }), PING_MS);
  };
  ws.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    handleFrame(frame, since);
  };
  ws.onclose = (event) => {
    clearInterval(state.pingTimer);
    if (state.ws === ws) state.ws = null;
    if (event.code === 4401) {
      signOut("Your session has expired or the sign-in link is not valid. Open a new sign-in link.");
      return;
    }
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  if (state.signedOut) return;
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.wsAttempts);
  const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2); // jitter: tabs don't stampede
  state.wsAttempts++;
  setConnection("offline", `Offline — reconnecting in ${Math.ceil(delay / 1000)} s`);
  clearTimeout(state.wsReconnectTimer);
  state.wsReconnectTimer = setTimeout(connect, delay);
}

function handleFrame(frame, since) {
  if (typeof frame.seq === "number") {
    if (state.lastSeq !== null && frame.seq <= state.lastSeq) return; // already applied
    saveSeq(frame.seq);
  }
  switch (frame.type) {
    case "ready": {
      const seq = frame.data && typeof frame.data.seq === "number" ? frame.data.seq : null;
      const first = !state.readyOnce;
      state.readyOnce = true;
      state.wsAttempts = 0;
      setConnection("live", "Live");
      if (seq !== null && state.lastSeq !== null && seq < state.lastSeq) {
        // The server's log is behind what this tab saw (a new database): start over from it.
        saveSeq(seq);
        reloadAll();
      } else if (seq !== null && (state.lastSeq === null || seq > state.lastSeq)) {
        saveSeq(seq);
      }
      const chosen = sessionStorage.getItem(storageKey("presence"));
      if (chosen && chosen !== "online") wsSend({ type: "presence", status: chosen });
      if (since === null && !first) reloadAll(); // nothing to resume from: refetch
      break;
    }
    case "reset":
      state.lastSeq = null;
      sessionStorage.removeItem(storageKey("seq"));
      reloadAll();
      break;
    case "message.created":
    case "message.updated":
    case "message.deleted":
      applyMessage(frame.data, frame.type);
      break;
    case "messages.read":
      applyRead(frame.data);
      break;
    case "conversation.updated":
      applyConversation(frame.data);
      break;
    case "typing":
      applyTyping(frame.data);
      break;
    case "presence":
      applyPresence(frame.data);
      break;
    case "ack":
      if (frame.data) applyMessage(frame.data, "message.created");
      break;
    case "error":
      if (frame.data && frame.data.detail) showError(String(frame.data.detail));
      break;
    default:
      break; // pong, and frames this client does not know
  }
}

async function reloadAll() {
  try {
    await loadConversations();
    if (state.currentId !== null) {
      if (state.conversations.has(state.currentId)) openConversation(state.currentId, { focus: false });
      else closeConversation();
    }
  } catch (err) {
    showError(err);
  }
}
