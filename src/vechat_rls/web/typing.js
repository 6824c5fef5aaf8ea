// typing.js — telling the peer I am typing (over the socket) and showing when they are.

import { el } from "./dom.js";
import { state, isMe } from "./state.js";
import { renderConversations } from "./conversations.js";
import { currentConversation } from "./open-conversation.js";
import { autoGrow } from "./sending.js";
import { wsSend } from "./websocket.js";

const TYPING_REFRESH_MS = 3000; // re-send "typing" this often while typing (server expiry: 5 s)
const TYPING_IDLE_MS = 3000; // stop typing after this long without a keystroke
const TYPING_EXPIRY_MS = 5000; // a peer's indicator disappears without a refresh

let typingSentAt = 0;
let typingConversationId = null;
let typingIdleTimer = null;

el.messageInput.addEventListener("input", () => {
  autoGrow();
  if (state.currentId === null) return;
  if (!el.messageInput.value.trim()) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (now - typingSentAt > TYPING_REFRESH_MS || typingConversationId !== state.currentId) {
    if (wsSend({ type: "typing", conversation_id: state.currentId, is_typing: true })) {
      typingSentAt = now;
      typingConversationId = state.currentId;
    }
  }
  clearTimeout(typingIdleTimer);
  typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
});

export function stopTyping() {
  clearTimeout(typingIdleTimer);
  if (typingSentAt && typingConversationId !== null) {
    wsSend({ type: "typing", conversation_id: typingConversationId, is_typing: false });
  }
  typingSentAt = 0;
  typingConversationId = null;
}

export function applyTyping(data) {
  if (!data || isMe(data.user)) return;
  const id = data.conversation_id;
  clearTimeout(state.typingTimers.get(id));
  if (data.is_typing) {
    state.typingTimers.set(id, setTimeout(() => clearPeerTyping(id), TYPING_EXPIRY_MS));
  } else {
    state.typingTimers.delete(id);
  }
  renderTyping();
  renderConversations();
}

export function clearPeerTyping(id) {
  if (!state.typingTimers.has(id)) return;
  clearTimeout(state.typingTimers.get(id));
  state.typingTimers.delete(id);
  renderTyping();
  renderConversations();
}

export function renderTyping() {
  const conversation = currentConversation();
  const typing = conversation && state.typingTimers.has(conversation.id);
  el.typing.textContent = typing ? `${(conversation.peer && conversation.peer.display_name) || "Your contact"} is typing…` : "";
}
