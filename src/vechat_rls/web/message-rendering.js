// message-rendering.js — drawing messages: bubbles, attachments (blob: URLs fetched with the
// token), the inline editor, per-message actions and statuses; the list is patched, not rebuilt.

import { el } from "./dom.js";
import { state, isMe } from "./state.js";
import { h, formatTime, formatDay, formatSize } from "./helpers.js";
import { showError } from "./errors.js";
import { api } from "./http.js";
import { previewOf } from "./conversations.js";
import { keepPinned } from "./open-conversation.js";
import { removeMessage, applyMessage } from "./messages.js";
import { deliver, discard } from "./sending.js";
import { setReply } from "./replying.js";

function attachmentOf(message) {
  const a = message.attachment;
  if (!a) return null;
  return {
    id: a.id ?? a.attachment_id,
    name: a.file_name || a.name || "attachment",
    size: a.file_size ?? a.size,
    type: a.file_type || a.mime_type || a.content_type || "",
  };
}

function blobUrl(attachmentId) {
  if (!state.blobUrls.has(attachmentId)) {
    const request = api("GET", `/attachments/${attachmentId}`, undefined, { raw: true })
      .then((response) => response.blob())
      .then((blob) => URL.createObjectURL(blob));
    request.catch(() => state.blobUrls.delete(attachmentId));
    state.blobUrls.set(attachmentId, request);
  }
  return state.blobUrls.get(attachmentId);
}

async function download(attachment) {
  try {
    const url = await blobUrl(attachment.id);
    const link = h("a", { href: url, download: attachment.name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (err) {
    showError(err);
  }
}

function renderAttachment(message) {
  const attachment = attachmentOf(message);
  if (message.message_type === "location" && message.location) {
    const latitude = Number(message.location.latitude).toFixed(5);
    const longitude = Number(message.location.longitude).toFixed(5);
    const map = `https://www.openstreetmap.org/?mlat=${latitude}&mlon=${longitude}#map=16/${latitude}/${longitude}`;
    return h("p", { class: "location" },
      h("span", { text: `Location: ${latitude}, ${longitude} ` }),
      h("a", { href: map, target: "_blank", rel: "noopener noreferrer", text: "Open map" }));
  }
  if (!attachment || attachment.id === undefined || attachment.id === null) return null;
  if (message.message_type === "image" || attachment.type.startsWith("image/")) {
    const img = h("img", { class: "inline-image", alt: attachment.name, onload: keepPinned });
    blobUrl(attachment.id).then((url) => { img.src = url; }, () => { img.alt = `${attachment.name} (could not be loaded)`; });
    return h("button", {
      type: "button", class: "image-button", "aria-label": `Open image ${attachment.name}`,
      onclick: () => blobUrl(attachment.id).then((url) => window.open(url, "_blank", "noopener"), showError),
    }, img);
  }
  if (message.message_type === "audio" || message.message_type === "video") {
    const media = h(message.message_type, {
      controls: true, preload: "metadata", class: "inline-media", onloadedmetadata: keepPinned,
    });
    blobUrl(attachment.id).then((url) => { media.src = url; }, () => {});
    return media;
  }
  return h("button", { type: "button", class: "file", onclick: () => download(attachment) },
    h("span", { class: "file-icon", "aria-hidden": "true", text: "⤓ " }),
    h("span", { class: "file-name", text: attachment.name }),
    attachment.size !== undefined ? h("span", { class: "file-size", text: ` (${formatSize(attachment.size)})` }) : null);
}

function renderEditor(message) {
  const input = h("textarea", { class: "edit-input", rows: "2", "aria-label": "Edit the message" });
  input.value = state.editDraft;
  const save = async () => {
    const body = input.value.trim();
    if (!body) return;
    try {
      const updated = await api("PATCH", `/messages/${message.id}`, { body });
      state.editingId = null;
      applyMessage(updated || { ...message, body, edited_at: new Date().toISOString() }, "message.updated");
    } catch (err) {
      showError(err);
    }
  };
  const cancel = () => {
    state.editingId = null;
    renderMessages();
  };
  input.addEventListener("input", () => { state.editDraft = input.value; });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); save(); }
    if (event.key === "Escape") { event.preventDefault(); cancel(); }
  });
  return h("div", { class: "editor" }, input,
    h("div", { class: "editor-actions" },
      h("button", { type: "button", class: "primary", onclick: save, text: "Save" }),
      h("button", { type: "button", onclick: cancel, text: "Cancel" })));
}

async function deleteMessage(message, scope) {
  if (scope === "everyone" && !confirm("Delete this message for everyone?")) return;
  try {
    await api("DELETE", `/messages/${message.id}?for=${scope}`);
    if (scope === "me") {
      removeMessage(message.id);
      renderMessages();
    } else {
      applyMessage({ ...message, deleted: true, body: null, attachment: null, location: null, audio: null }, "message.deleted");
    }
  } catch (err) {
    showError(err);
  }
}

function renderStatus(message) {
  if (message.pending) {
    if (message.status === "failed") {
      return h("span", { class: "status failed" }, "Not sent ",
        h("button", { type: "button", class: "link", onclick: () => deliver(message), text: "Retry" }), " ",
        h("button", { type: "button", class: "link", onclick: () => discard(message), text: "Discard" }));
    }
    return h("span", { class: "status sending", text: message.status === "uploading" ? "Uploading…" : "Sending…" });
  }
  if (!isMe(message.sender) || message.deleted) return null;
  return message.read_at
    ? h("span", { class: "status read", title: `Read ${formatTime(message.read_at)}`, text: "✓✓ Read" })
    : h("span", { class: "status sent", title: "Sent", text: "✓ Sent" });
}

/**
 * A reply's quote: the original's text, or the deleted marker (never the deleted text). The API
 * says the original is gone with `reply_to.deleted`; before it did, only by a null preview, which
 * for a text message (it always has a body) means deleted. A loaded original that is a tombstone
 * says so too, whatever the quote still holds.
 */
function quoteShown(quoted) {
  const original = state.messages.find((m) => m.id === quoted.id);
  const deleted = quoted.deleted === true || !!(original && original.deleted)
    || ((quoted.body_preview === null || quoted.body_preview === undefined)
      && (quoted.message_type || "text") === "text");
  return deleted ? { deleted, text: "Message deleted" } : { deleted, text: quoted.body_preview || previewOf(quoted) };
}

function renderMessage(message) {
  const own = isMe(message.sender);
  const classes = ["msg", own ? "own" : "theirs"];
  if (message.pending) classes.push("pending");
  if (message.deleted) classes.push("deleted");
  const bubble = h("div", { class: "bubble" });
  if (message.reply_to && !message.deleted) {
    const quote = quoteShown(message.reply_to);
    bubble.append(h("p", { class: quote.deleted ? "reply reply-deleted" : "reply", text: `↪ ${quote.text}` }));
  }
  if (message.deleted) {
    bubble.append(h("p", { class: "body tombstone", text: "This message was deleted." }));
  } else if (!message.pending && state.editingId === message.id) {
    bubble.append(renderEditor(message));
  } else {
    if (message.pending && message.status === "uploading") {
      bubble.append(h("p", { class: "uploading", text: message.upload_name }));
    } else {
      const attachment = renderAttachment(message);
      if (attachment) bubble.append(attachment);
    }
    if (message.body) bubble.append(h("p", { class: "body", text: message.body }));
  }
  bubble.append(h("div", { class: "meta" },
    h("time", { datetime: message.created_at || "", text: formatTime(message.created_at) }),
    message.edited_at && !message.deleted ? h("span", { class: "edited", text: "edited" }) : null,
    renderStatus(message)));

  const actions = [];
  if (!message.pending && !message.deleted) {
    actions.push(h("button", {
      type: "button", class: "link", text: "Reply",
      onclick: () => { setReply(message); el.messageInput.focus(); },
    }));
    if (own && (message.message_type === "text" || !message.message_type)) {
      actions.push(h("button", {
        type: "button", class: "link", text: "Edit",
        onclick: () => { state.editingId = message.id; state.editDraft = message.body || ""; renderMessages(); focusEditor(); },
      }));
    }
    actions.push(h("button", { type: "button", class: "link", text: "Delete for me", onclick: () => deleteMessage(message, "me") }));
    if (own) {
      actions.push(h("button", { type: "button", class: "link danger", text: "Delete for everyone", onclick: () => deleteMessage(message, "everyone") }));
    }
  }
  return h("li", { class: classes.join(" "), "data-id": message.id ?? null, "data-client-id": message.client_id || null },
    bubble, actions.length ? h("div", { class: "actions" }, actions) : null);
}

function focusEditor() {
  const input = el.messageList.querySelector(".edit-input");
  if (input) {
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }
}

/**
 * The list is patched, not rebuilt: a message whose content did not change keeps its node, so
 * images are not reloaded, an edit in progress keeps its text and focus, and the log region
 * announces only what is new.
 */
const messageNodes = new Map(); // key -> {signature, node}

/**
 * The message opened from the search results stands out until its timer ends. The rendering
 * keeps it: a node drawn again meanwhile (it was read, edited, …) is highlighted too.
 */
let found = { id: null, timer: null };

export function highlightFound(id, ms) {
  clearTimeout(found.timer);
  found = { id, timer: setTimeout(() => { found = { id: null, timer: null }; markFound(); }, ms) };
  markFound();
}

function markFound() {
  const wanted = found.id === null ? null : `id:${found.id}`;
  for (const [key, { node }] of messageNodes) node.classList.toggle("found", key === wanted);
}

/** A conversation (re)opens: nothing drawn before is kept or reused. */
export function clearRenderedMessages() {
  messageNodes.clear();
  el.messageList.replaceChildren();
}

function cachedNode(key, signature, build) {
  const cached = messageNodes.get(key);
  if (cached && cached.signature === signature) return cached.node;
  const node = build();
  messageNodes.set(key, { signature, node });
  return node;
}

function patchChildren(parent, nodes) {
  let cursor = parent.firstChild;
  for (const node of nodes) {
    if (node === cursor) {
      cursor = cursor.nextSibling;
      continue;
    }
    parent.insertBefore(node, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

export function renderMessages({ toBottom = false } = {}) {
  if (state.currentId === null) return;
  const stick = toBottom || state.pinned;
  const pending = [...state.outbox.values()].filter((m) => m.conversation_id === state.currentId);
  const items = [];
  const used = new Set();
  let day = null;
  for (const message of [...state.messages, ...pending]) {
    const thisDay = message.created_at ? new Date(message.created_at).toDateString() : day;
    if (thisDay !== day && message.created_at) {
      const key = `day:${thisDay}`;
      used.add(key);
      items.push(cachedNode(key, thisDay, () => h("li", { class: "day", role: "presentation" },
        h("span", { text: formatDay(message.created_at) }))));
      day = thisDay;
    }
    const key = message.id !== undefined && message.id !== null ? `id:${message.id}` : `client:${message.client_id}`;
    used.add(key);
    const signature = JSON.stringify([message, state.editingId === message.id && !message.pending,
      message.reply_to ? quoteShown(message.reply_to) : null]);
    items.push(cachedNode(key, signature, () => renderMessage(message)));
  }
  for (const key of messageNodes.keys()) if (!used.has(key)) messageNodes.delete(key);
  patchChildren(el.messageList, items);
  markFound();
  el.loadOlder.hidden = !state.hasOlder;
  if (stick) {
    el.messages.scrollTop = el.messages.scrollHeight;
    state.pinned = true;
  }
}
