// sending.js — the composer and delivery: pending messages in the outbox, POST with a client_id
// retried until answered, text, files, locations; the composer grows with its text.

import { el } from "./dom.js";
import { state } from "./state.js";
import { sleep, uuid } from "./helpers.js";
import { showError } from "./errors.js";
import { api } from "./http.js";
import { currentConversation } from "./open-conversation.js";
import { applyMessage } from "./messages.js";
import { renderMessages } from "./message-rendering.js";
import { setReply, withReply } from "./replying.js";
import { stopTyping } from "./typing.js";

const SEND_RETRIES_MS = [500, 1000, 2000, 4000, 8000];
const MAX_UPLOAD_BYTES = 10 * 1024 * 1024;
const MAX_VOICE_BYTES = 5 * 1024 * 1024; // VECHAT_MAX_VOICE_BYTES' default
const MAX_LOCATION_ACCURACY_M = 99999999; // the API's bound on `accuracy`

function pendingMessage(conversation, fields) {
  return {
    pending: true,
    status: "sending",
    client_id: uuid(),
    conversation_id: conversation.id,
    sender: { user_id: state.me.user_id, user_type: state.me.user_type },
    receiver: conversation.peer ? { user_id: conversation.peer.user_id, user_type: conversation.peer.user_type } : null,
    message_type: fields.message_type || "text",
    body: fields.body ?? null,
    attachment: null,
    created_at: new Date().toISOString(),
    fields,
  };
}

/** POST with the message's client_id until the server answers; a retry never duplicates. */
export async function deliver(message) {
  message.status = "sending";
  state.outbox.set(message.client_id, message);
  renderMessages({ toBottom: true });
  for (let attempt = 0; ; attempt++) {
    try {
      const sent = await api("POST", `/conversations/${message.conversation_id}/messages`,
        { client_id: message.client_id, ...message.fields });
      applyMessage(sent, "message.created");
      return;
    } catch (err) {
      if (!state.outbox.has(message.client_id)) return; // already delivered (seen over the socket)
      if (err.retryable && attempt < SEND_RETRIES_MS.length && !state.signedOut) {
        await sleep(err.retryAfterS ? err.retryAfterS * 1000 : SEND_RETRIES_MS[attempt]);
        continue;
      }
      message.status = "failed";
      showError(err);
      renderMessages();
      return;
    }
  }
}

export function discard(message) {
  state.outbox.delete(message.client_id);
  renderMessages();
}

function sendText() {
  const conversation = currentConversation();
  const body = el.messageInput.value.trim();
  if (!conversation || !body) return;
  el.messageInput.value = "";
  autoGrow();
  stopTyping();
  deliver(withReply(pendingMessage(conversation, { message_type: "text", body })));
}

el.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  sendText();
});

el.messageInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendText();
  } else if (event.key === "Escape" && state.replyTo) {
    event.preventDefault();
    setReply(null);
  }
});

export function autoGrow() {
  const box = el.messageInput;
  box.style.height = "auto";
  if (!box.scrollHeight) return; // hidden: measured again when shown
  const borders = box.offsetHeight - box.clientHeight; // border-box: height includes them
  box.style.height = `${Math.min(box.scrollHeight + borders, 160)}px`;
}

el.attachButton.addEventListener("click", () => el.attachInput.click());

/** The browser's position, asked for once per click and sent only after the user agrees. */
el.locationButton.addEventListener("click", () => {
  const conversation = currentConversation();
  if (!conversation) return;
  if (!navigator.geolocation) {
    showError("This browser cannot share a location.");
    return;
  }
  const name = (conversation.peer && conversation.peer.display_name) || "this conversation";
  if (!confirm(`Share your current location with ${name}?`)) return;
  el.locationButton.disabled = true;
  navigator.geolocation.getCurrentPosition((position) => {
    el.locationButton.disabled = false;
    const { latitude, longitude, accuracy } = position.coords;
    const location = {
      latitude, longitude,
      accuracy: Number.isFinite(accuracy) ? Math.min(accuracy, MAX_LOCATION_ACCURACY_M) : null,
    };
    const message = withReply(pendingMessage(conversation, { message_type: "location", location }));
    message.location = location;
    deliver(message);
  }, (error) => {
    el.locationButton.disabled = false;
    showError(error.code === error.PERMISSION_DENIED
      ? "Location sharing is blocked for this page (see the browser's site settings)."
      : "Your location could not be found.");
  }, { enableHighAccuracy: false, timeout: 15000, maximumAge: 60000 });
});

el.attachInput.addEventListener("change", () => {
  const file = el.attachInput.files && el.attachInput.files[0];
  el.attachInput.value = "";
  const conversation = currentConversation();
  if (file && conversation) sendFile(conversation, file);
});

/** Upload `file`, then send it as a message of the kind its (server-checked) type says;
 *  `audio` (a voice message's `{duration_s}`) goes with it when it is audio. */
export async function sendFile(conversation, file, audio = null) {
  const limit = audio ? MAX_VOICE_BYTES : MAX_UPLOAD_BYTES;
  if (file.size > limit) {
    showError(`${file.name} is larger than ${limit / 1024 / 1024} MB.`);
    return;
  }
  const message = withReply(pendingMessage(conversation, {}));
  message.status = "uploading";
  message.upload_name = file.name;
  state.outbox.set(message.client_id, message);
  renderMessages({ toBottom: true });
  const form = new FormData();
  form.append("file", file, file.name);
  let uploaded;
  try {
    uploaded = await api("POST", "/attachments", form);
  } catch (err) {
    state.outbox.delete(message.client_id);
    renderMessages();
    showError(err);
    return;
  }
  const type = uploaded.file_type || "";
  const kind = type.startsWith("image/") ? "image" : type.startsWith("video/") ? "video"
    : type.startsWith("audio/") ? "audio" : "file";
  if (kind === "image") state.blobUrls.set(uploaded.id, Promise.resolve(URL.createObjectURL(file)));
  message.message_type = kind;
  message.attachment = uploaded;
  message.fields = { ...message.fields, message_type: kind, attachment_id: uploaded.id };
  if (audio && kind === "audio") {
    message.fields.audio = audio;
    message.audio = audio;
  }
  deliver(message);
}
