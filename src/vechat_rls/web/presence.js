// presence.js — everyone's online status (as last heard) and my own (the status menu).

import { el } from "./dom.js";
import { state, storageKey } from "./state.js";
import { key, formatWhen } from "./helpers.js";
import { showError } from "./errors.js";
import { api } from "./http.js";
import { renderConversations } from "./conversations.js";
import { renderHeader } from "./open-conversation.js";
import { wsSend } from "./websocket.js";

export function normalisePresence(value) {
  if (!value) return { status: "offline", last_seen: null };
  if (typeof value === "string") return { status: value, last_seen: null };
  return { status: value.status || "offline", last_seen: value.last_seen || null };
}

export function presenceOf(participant) {
  return state.presence.get(key(participant)) || { status: "offline", last_seen: null };
}

export function presenceText(p) {
  if (p.status === "offline") return p.last_seen ? `Last seen ${formatWhen(p.last_seen)}` : "Offline";
  return { online: "Online", away: "Away", busy: "Busy" }[p.status] || p.status;
}

export function applyPresence(data) {
  state.presence.set(key(data), normalisePresence(data));
  renderConversations();
  renderHeader();
}

el.presenceSelect.addEventListener("change", async () => {
  const status = el.presenceSelect.value;
  sessionStorage.setItem(storageKey("presence"), status);
  // Over the socket when it is open: the server then tells the peers at once.
  if (wsSend({ type: "presence", status })) return;
  try {
    await api("PUT", "/presence", { status });
  } catch (err) {
    showError(err);
  }
});
