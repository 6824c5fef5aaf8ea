// replying.js — the message the next one sent answers, shown in the bar above the composer.

import { el } from "./dom.js";
import { state } from "./state.js";
import { previewOf } from "./conversations.js";

/** The message the next one sent answers (null: none); shown above the composer. */
export function setReply(message) {
  state.replyTo = message && message.id != null ? { id: message.id, preview: previewOf(message) } : null;
  el.replyBar.hidden = !state.replyTo;
  el.replyPreview.textContent = state.replyTo ? `↪ ${state.replyTo.preview}` : "";
}

/** A pending message answers the chosen one, if any: the reply is used up. */
export function withReply(message) {
  if (state.replyTo) {
    message.fields.reply_to_id = state.replyTo.id;
    message.reply_to = { id: state.replyTo.id, body_preview: state.replyTo.preview };
    setReply(null);
  }
  return message;
}

el.replyCancel.addEventListener("click", () => {
  setReply(null);
  el.messageInput.focus();
});
