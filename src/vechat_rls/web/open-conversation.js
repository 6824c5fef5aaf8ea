// open-conversation.js — the conversation in the pane: opening and closing it, its header and
// actions (mute, archive, delete), per-conversation drafts, paging back through older messages.

import { el } from "./dom.js";
import { state, storageKey } from "./state.js";
import { showError } from "./errors.js";
import { api } from "./http.js";
import { presenceOf, presenceText } from "./presence.js";
import { hiddenThrough, fetchConversation, renderConversations, applyConversation } from "./conversations.js";
import { upsertMessage, isNearBottom } from "./messages.js";
import { scheduleMarkRead } from "./read-receipts.js";
import { clearRenderedMessages, renderMessages } from "./message-rendering.js";
import { autoGrow } from "./sending.js";
import { setReply } from "./replying.js";
import { cancelRecording } from "./voice.js";
import { stopTyping, renderTyping } from "./typing.js";

const PAGE_SIZE = 50;

const drafts = new Map(); // conversation id -> unsent text

export function currentConversation() {
  return state.currentId === null ? null : state.conversations.get(state.currentId) || null;
}

export function renderHeader() {
  const conversation = currentConversation();
  if (!conversation) return;
  const peer = conversation.peer || {};
  const presence = presenceOf(peer);
  el.peerName.textContent = peer.display_name || "Unknown";
  el.peerPresence.dataset.status = presence.status;
  el.peerStatus.textContent = `${peer.user_type === "client" ? "Client" : "Staff"} · ${presenceText(presence)}`;
  el.toggleMute.textContent = conversation.muted ? "Unmute" : "Mute";
  el.toggleMute.setAttribute("aria-pressed", conversation.muted ? "true" : "false");
  el.toggleArchive.textContent = conversation.archived ? "Unarchive" : "Archive";
}

export async function openConversation(id, { focus = true } = {}) {
  stopTyping();
  const generation = ++state.openGeneration;
  if (state.currentId !== id) {
    // Each conversation keeps its own unsent draft.
    if (state.currentId !== null) drafts.set(state.currentId, el.messageInput.value);
    el.messageInput.value = drafts.get(id) || "";
    drafts.delete(id);
  }
  state.currentId = id;
  state.messages = [];
  state.hasOlder = false;
  state.editingId = null;
  setReply(null);
  cancelRecording();
  clearRenderedMessages();
  sessionStorage.setItem(storageKey("open"), String(id));
  el.paneEmpty.hidden = true;
  el.conversation.hidden = false;
  el.layout.dataset.view = "conversation";
  autoGrow();
  renderHeader();
  renderTyping();
  renderConversations();
  renderMessages({ toBottom: true });
  if (!state.conversations.has(id)) {
    try {
      await fetchConversation(id);
    } catch (err) {
      if (generation === state.openGeneration) closeConversation();
      showError(err);
      return;
    }
    if (generation !== state.openGeneration) return;
    renderHeader();
  }
  try {
    const page = await api("GET", `/conversations/${id}/messages?limit=${PAGE_SIZE}`);
    if (generation !== state.openGeneration) return;
    for (const message of page.items) upsertMessage(message);
    state.hasOlder = page.next_cursor ? true : page.items.length >= PAGE_SIZE;
    if (state.hasOlder && page.items.length) {
      // Events that arrived while the page loaded may be older than it: paging brings them.
      const oldest = page.items[0].id;
      state.messages = state.messages.filter((m) => m.id >= oldest);
    }
    renderMessages({ toBottom: true });
    scheduleMarkRead();
  } catch (err) {
    showError(err);
  }
  if (focus && generation === state.openGeneration) el.messageInput.focus();
}

export function closeConversation() {
  stopTyping();
  setReply(null);
  cancelRecording();
  state.openGeneration++;
  state.currentId = null;
  state.messages = [];
  sessionStorage.removeItem(storageKey("open"));
  el.conversation.hidden = true;
  el.paneEmpty.hidden = false;
  el.layout.dataset.view = "list";
  renderConversations();
}

el.back.addEventListener("click", () => {
  el.layout.dataset.view = "list";
});

export async function loadOlder() {
  if (state.loadingOlder || !state.hasOlder || state.currentId === null) return;
  const oldest = state.messages.find((m) => m.id !== undefined && m.id !== null);
  if (!oldest) return;
  const generation = state.openGeneration;
  state.loadingOlder = true;
  el.loadOlder.disabled = true;
  try {
    const page = await api("GET", `/conversations/${state.currentId}/messages?before=${oldest.id}&limit=${PAGE_SIZE}`);
    if (generation !== state.openGeneration) return;
    const fromBottom = el.messages.scrollHeight - el.messages.scrollTop;
    for (const message of page.items) upsertMessage(message);
    state.hasOlder = page.items.length > 0 && (page.next_cursor ? true : page.items.length >= PAGE_SIZE);
    renderMessages();
    el.messages.scrollTop = el.messages.scrollHeight - fromBottom;
  } catch (err) {
    showError(err);
  } finally {
    state.loadingOlder = false;
    el.loadOlder.disabled = false;
  }
}

el.loadOlder.addEventListener("click", loadOlder);
el.messages.addEventListener("scroll", () => {
  state.pinned = isNearBottom();
  if (el.messages.scrollTop < 40) loadOlder();
});

/** Content that grew later (an image arrived) keeps a pinned pane at the bottom. */
export function keepPinned() {
  if (state.pinned) el.messages.scrollTop = el.messages.scrollHeight;
}

el.toggleMute.addEventListener("click", () => patchConversation({ muted: !currentConversation().muted }));
el.toggleArchive.addEventListener("click", () => patchConversation({ archived: !currentConversation().archived }));

async function patchConversation(change) {
  const conversation = currentConversation();
  if (!conversation) return;
  try {
    const updated = await api("PATCH", `/conversations/${conversation.id}`, change);
    applyConversation(updated || { ...conversation, ...change });
  } catch (err) {
    showError(err);
  }
}

el.deleteConversation.addEventListener("click", async () => {
  const conversation = currentConversation();
  if (!conversation) return;
  const name = (conversation.peer && conversation.peer.display_name) || "this contact";
  if (!confirm(`Delete the conversation with ${name} for you? ${name} keeps their copy.`)) return;
  try {
    const newest = Math.max(0, conversation.last_message ? conversation.last_message.id : 0,
      ...state.messages.map((m) => m.id || 0));
    await api("DELETE", `/conversations/${conversation.id}`);
    hiddenThrough.set(conversation.id, newest);
    state.conversations.delete(conversation.id);
    closeConversation();
  } catch (err) {
    showError(err);
  }
});
