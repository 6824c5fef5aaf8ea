// contacts.js — the "New chat" panel: searching contacts and starting a conversation.

import { el } from "./dom.js";
import { state, isMe } from "./state.js";
import { h } from "./helpers.js";
import { showError } from "./errors.js";
import { api } from "./http.js";
import { storeConversation, renderConversations } from "./conversations.js";
import { openConversation } from "./open-conversation.js";

let contactAbort = null;
let contactTimer = null;

el.newChat.addEventListener("click", () => {
  const open = el.contactsPanel.hidden;
  el.contactsPanel.hidden = !open;
  el.newChat.setAttribute("aria-expanded", String(open));
  el.newChat.textContent = open ? "Close" : "New chat";
  if (open) {
    el.contactSearch.value = "";
    searchContacts();
    el.contactSearch.focus();
  }
});

el.contactSearch.addEventListener("input", () => {
  clearTimeout(contactTimer);
  contactTimer = setTimeout(searchContacts, 200);
});

el.contactSearch.addEventListener("keydown", (event) => {
  if (event.key === "Escape") el.newChat.click();
});

async function searchContacts() {
  if (contactAbort) contactAbort.abort();
  const abort = new AbortController();
  contactAbort = abort;
  const query = new URLSearchParams({ limit: "50" });
  const q = el.contactSearch.value.trim();
  if (q) query.set("q", q);
  try {
    const page = await api("GET", `/contacts?${query}`, undefined, { signal: abort.signal });
    if (abort.signal.aborted) return;
    const contacts = page.items.filter((c) => !isMe(c) && c.active !== false);
    el.contactList.replaceChildren(...contacts.map((c) => h("li", null,
      h("button", { type: "button", class: "contact-item", onclick: () => startConversation(c) },
        h("span", { class: "name", text: c.display_name || `${c.user_type} ${c.user_id}` }),
        h("span", { class: "muted", text: [c.user_type === "client" ? "Client" : "Staff", c.email].filter(Boolean).join(" · ") })))));
    el.contactEmpty.hidden = contacts.length > 0;
  } catch (err) {
    showError(err);
  }
}

async function startConversation(contact) {
  try {
    const conversation = await api("POST", "/conversations", {
      peer: { user_id: contact.user_id, user_type: contact.user_type },
    }, { retry: true }); // create-or-get: repeating it is harmless
    storeConversation(conversation);
    state.showArchived = !!conversation.archived;
    el.showArchived.checked = state.showArchived;
    el.newChat.click();
    renderConversations();
    openConversation(conversation.id);
  } catch (err) {
    showError(err);
  }
}
