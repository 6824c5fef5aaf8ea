// messages.js — the open conversation's message list as data, and applying message and read
// events (from the socket or an HTTP answer) to it and to the conversation list.

import { el } from "./dom.js";
import { state, isMe } from "./state.js";
import { hiddenThrough, fetchConversation, renderConversations } from "./conversations.js";
import { paneVisible, scheduleMarkRead } from "./read-receipts.js";
import { renderMessages } from "./message-rendering.js";
import { clearPeerTyping } from "./typing.js";
import { setReply } from "./replying.js";

const QUOTE_CHARS = 100; // the API's reply_to.body_preview: the first 100 characters

/** What a reply quoting `message` shows of it now, as the API's `reply_to` says it. */
function quoteOf(message) {
  if (message.deleted) return { body_preview: null, deleted: true };
  const body = typeof message.body === "string" ? Array.from(message.body).slice(0, QUOTE_CHARS).join("") : null;
  return { body_preview: body, message_type: message.message_type, deleted: false };
}

/**
 * Every quote of `message` this tab holds follows it: an edit brings the new text, a delete for
 * everyone the deleted marker. The replies' own events do not come again, so they are patched here.
 */
function requote(message) {
  const now = quoteOf(message);
  for (const m of [...state.messages, ...state.outbox.values()]) {
    if (m.reply_to && m.reply_to.id === message.id) m.reply_to = { ...m.reply_to, ...now };
  }
  if (state.replyTo && state.replyTo.id === message.id) setReply(message);
}

export function upsertMessage(message, { live = false } = {}) {
  if (message.conversation_id !== state.currentId) return;
  const index = state.messages.findIndex((m) => m.id === message.id);
  if (index >= 0) {
    state.messages[index] = message;
    return;
  }
  // Older than what is loaded, with more history above: it comes with paging, not as a stray.
  if (live && state.hasOlder && state.messages.length && message.id < state.messages[0].id) return;
  let at = state.messages.length;
  while (at > 0 && state.messages[at - 1].id > message.id) at--;
  state.messages.splice(at, 0, message);
}

export function removeMessage(id) {
  state.messages = state.messages.filter((m) => m.id !== id);
}

export function isNearBottom() {
  return el.messages.scrollHeight - el.messages.scrollTop - el.messages.clientHeight < 80;
}

/** A durable message event (or an HTTP answer) for any conversation. */
export function applyMessage(message, eventType = "message.created") {
  if (!message || message.conversation_id === undefined) return;
  if (message.client_id && isMe(message.sender)) state.outbox.delete(message.client_id);
  const mark = hiddenThrough.get(message.conversation_id);
  if (mark !== undefined && message.id <= mark) return; // history I deleted for me
  const conversation = state.conversations.get(message.conversation_id);
  const open = message.conversation_id === state.currentId;
  const stickToBottom = state.pinned || isMe(message.sender);

  // An event whose message I can no longer see (hidden for me, in another tab of mine) comes
  // with ids only; so does "delete for me" itself.
  const hiddenForMe = !message.sender || (eventType === "message.deleted" && !message.deleted);
  if (hiddenForMe) {
    if (open) removeMessage(message.id);
  } else if (open) {
    upsertMessage(message, { live: true });
  }
  // Also when the quoted message itself is not loaded (older than the page): its replies may be.
  if (!hiddenForMe && eventType !== "message.created") requote(message);

  if (conversation) {
    const last = conversation.last_message;
    const newest = !last || message.id > last.id;
    if (hiddenForMe) {
      // The preview showed it: ask the server what the last visible message is now.
      if (last && last.id === message.id) fetchConversation(conversation.id).catch(() => {});
    } else if (newest || message.id === last.id) {
      conversation.last_message = message;
      if (newest) conversation.last_message_at = message.created_at;
    }
    // Only a message newer than the list's last one is news: a replayed event after a reload
    // was already counted by the server in the list just fetched.
    if (eventType === "message.created" && newest && !hiddenForMe && isMe(message.receiver)) {
      if (!(open && paneVisible())) conversation.unread_count = (conversation.unread_count || 0) + 1;
      conversation.archived = false;
    }
  } else if (eventType === "message.created" && !hiddenForMe) {
    fetchConversation(message.conversation_id).catch(() => {});
  }

  if (eventType === "message.created" && !hiddenForMe && !isMe(message.sender)) {
    clearPeerTyping(message.conversation_id);
  }
  renderConversations();
  if (open) {
    renderMessages({ toBottom: stickToBottom && eventType === "message.created" });
    if (isMe(message.receiver)) scheduleMarkRead();
  }
}

export function applyRead(data) {
  if (!data) return;
  const conversation = state.conversations.get(data.conversation_id);
  const upTo = data.up_to_message_id;
  if (isMe(data.reader)) {
    // Read in another tab of mine.
    if (conversation && (upTo === null || upTo === undefined || !conversation.last_message || upTo >= conversation.last_message.id)) {
      conversation.unread_count = 0;
    }
    renderConversations();
    return;
  }
  const covers = (m) => m && isMe(m.sender) && !m.read_at && (upTo === null || upTo === undefined || m.id <= upTo);
  if (data.conversation_id === state.currentId) {
    for (const m of state.messages) if (covers(m)) m.read_at = data.read_at || new Date().toISOString();
    renderMessages();
  }
  if (conversation && covers(conversation.last_message)) {
    conversation.last_message = { ...conversation.last_message, read_at: data.read_at };
  }
}
