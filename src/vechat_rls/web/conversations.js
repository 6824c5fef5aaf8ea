// conversations.js — the conversation list: loading, storing, rendering (with previews and unread
// counts), archived filter, and conversations hidden because I deleted them in this tab.

import { el } from "./dom.js";
import { state, isMe } from "./state.js";
import { h, key, formatWhen } from "./helpers.js";
import { api } from "./http.js";
import { normalisePresence, presenceOf, presenceText } from "./presence.js";
import { renderHeader, openConversation, closeConversation } from "./open-conversation.js";
import { scheduleMarkRead } from "./read-receipts.js";
import { renderTitle } from "./identity.js";

/**
 * Conversations deleted for me in this tab -> the newest message id they had. Events already
 * on their way (read back before the delete committed) must not bring one back; only a newer
 * message does.
 */
export const hiddenThrough = new Map();

function stillHidden(conversation) {
  if (!hiddenThrough.has(conversation.id)) return false;
  const last = conversation.last_message;
  if (last && last.id > hiddenThrough.get(conversation.id)) {
    hiddenThrough.delete(conversation.id);
    return false;
  }
  return true;
}

export function storeConversation(conversation) {
  const known = state.conversations.get(conversation.id);
  state.conversations.set(conversation.id, conversation);
  if (conversation.peer && conversation.peer.presence !== undefined) {
    // A conversation is a snapshot read back some time ago: it does not override a fresher
    // presence frame (last_seen orders them).
    const fresh = normalisePresence(conversation.peer.presence);
    const held = state.presence.get(key(conversation.peer));
    if (!held || !held.last_seen || (fresh.last_seen && Date.parse(fresh.last_seen) >= Date.parse(held.last_seen))) {
      state.presence.set(key(conversation.peer), fresh);
    }
  }
  return known;
}

export async function loadConversations() {
  const items = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ archived: "any", limit: "200" });
    if (cursor) query.set("cursor", cursor);
    const page = await api("GET", `/conversations?${query}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < 2000);
  state.conversations.clear();
  for (const conversation of items) if (!stillHidden(conversation)) storeConversation(conversation);
  renderConversations();
  renderHeader();
}

const conversationFetches = new Map();
export function fetchConversation(id) {
  if (!conversationFetches.has(id)) {
    const request = api("GET", `/conversations/${id}`)
      .then((conversation) => {
        if (stillHidden(conversation)) return conversation;
        storeConversation(conversation);
        renderConversations();
        renderHeader();
        return conversation;
      }, (err) => {
        if (err.status === 404 && state.conversations.delete(id)) renderConversations();
        throw err;
      })
      .finally(() => conversationFetches.delete(id));
    conversationFetches.set(id, request);
  }
  return conversationFetches.get(id);
}

export function previewOf(message) {
  if (!message) return "";
  if (message.deleted) return "Message deleted";
  const attachment = message.attachment || {};
  switch (message.message_type) {
    case "image": return "Photo";
    case "video": return "Video";
    case "audio": return "Voice message";
    case "file": return `File: ${attachment.file_name || "attachment"}`;
    case "location": return "Location";
    default: return message.body || "";
  }
}

function sortedConversations() {
  return [...state.conversations.values()]
    .filter((c) => !!c.archived === state.showArchived)
    .sort((a, b) => (b.last_message_at || b.created_at || "").localeCompare(a.last_message_at || a.created_at || "")
      || b.id - a.id);
}

export function renderConversations() {
  if (!state.me) return;
  const list = sortedConversations();
  const focusedId = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.conversationId : undefined;
  el.conversationList.replaceChildren(...list.map((c) => {
    const peer = c.peer || {};
    const presence = presenceOf(peer);
    const typing = state.typingTimers.has(c.id);
    const last = c.last_message;
    const preview = typing ? "typing…" : (last ? (isMe(last.sender) ? "You: " : "") + previewOf(last) : "No messages yet");
    const unread = c.unread_count || 0;
    const label = [peer.display_name || "Unknown", presenceText(presence), unread ? `${unread} unread` : null,
      c.muted ? "muted" : null, preview].filter(Boolean).join(", ");
    return h("li", null, h("button", {
      type: "button",
      class: "conversation-item",
      "data-conversation-id": c.id,
      "aria-current": c.id === state.currentId ? "true" : null,
      "aria-label": label,
      onclick: () => openConversation(c.id),
    },
    h("span", { class: "presence-dot", "data-status": presence.status, "aria-hidden": "true" }),
    h("span", { class: "conversation-main" },
      h("span", { class: "conversation-top" },
        h("span", { class: "name", text: peer.display_name || "Unknown" }),
        c.muted ? h("span", { class: "muted-tag", text: "muted" }) : null,
        h("time", { class: "when", datetime: c.last_message_at || "", text: formatWhen(c.last_message_at) })),
      h("span", { class: "conversation-bottom" },
        h("span", { class: typing ? "preview typing-preview" : "preview", text: preview }),
        unread ? h("span", { class: "badge", "aria-hidden": "true", text: unread > 99 ? "99+" : String(unread) }) : null))));
  }));
  el.conversationEmpty.hidden = list.length > 0;
  el.conversationEmpty.textContent = state.showArchived
    ? "No archived conversations."
    : "No conversations yet. Start one with “New chat”.";
  if (focusedId) {
    const again = el.conversationList.querySelector(`[data-conversation-id="${CSS.escape(focusedId)}"]`);
    if (again) again.focus();
  }
  const unreadTotal = [...state.conversations.values()].reduce((n, c) => n + (c.archived ? 0 : c.unread_count || 0), 0);
  renderTitle(unreadTotal);
}

el.showArchived.addEventListener("change", () => {
  state.showArchived = el.showArchived.checked;
  renderConversations();
});

export function applyConversation(conversation) {
  if (!conversation || conversation.id === undefined) return;
  const known = state.conversations.get(conversation.id);
  // Ids only: I can no longer see it. No last message where there was one (or for one this tab
  // does not list): deleted for me, here or in another tab; a new message brings it back.
  if (!conversation.peer || stillHidden(conversation)
      || (!conversation.last_message && (!known || known.last_message))) {
    state.conversations.delete(conversation.id);
    if (conversation.id === state.currentId) closeConversation();
    renderConversations();
    return;
  }
  storeConversation(conversation);
  if (conversation.id === state.currentId) {
    // The server's count is authoritative; a visible pane reads what it shows.
    scheduleMarkRead();
  }
  renderConversations();
  renderHeader();
}
