// read-receipts.js — marking what the visible pane shows as read (POST …/read).

import { el } from "./dom.js";
import { state, isMe } from "./state.js";
import { showError } from "./errors.js";
import { api } from "./http.js";
import { renderConversations } from "./conversations.js";
import { currentConversation } from "./open-conversation.js";
import { stopTyping } from "./typing.js";

export function paneVisible() {
  return document.visibilityState === "visible" && state.currentId !== null && !el.conversation.hidden;
}

let markReadTimer = null;
export function scheduleMarkRead() {
  clearTimeout(markReadTimer);
  markReadTimer = setTimeout(markRead, 150);
}

async function markRead() {
  if (!paneVisible()) return;
  const id = state.currentId;
  const conversation = currentConversation();
  const unreadIncoming = state.messages.filter((m) => m.id && isMe(m.receiver) && !m.read_at);
  if (!unreadIncoming.length && !(conversation && conversation.unread_count)) return;
  const upTo = Math.max(0, ...state.messages.filter((m) => m.id).map((m) => m.id));
  const now = new Date().toISOString();
  for (const m of unreadIncoming) m.read_at = now;
  if (conversation) conversation.unread_count = 0;
  renderConversations();
  const body = upTo ? { up_to_message_id: upTo } : {};
  try {
    await api("POST", `/conversations/${id}/read`, body, { retry: true });
  } catch (err) {
    showError(err);
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") scheduleMarkRead();
  else stopTyping();
});
window.addEventListener("focus", scheduleMarkRead);
