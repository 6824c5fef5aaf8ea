// message-search.js — the sidebar's message search and jumping to a result in its conversation.

import { el } from "./dom.js";
import { state, isMe } from "./state.js";
import { h, formatWhen } from "./helpers.js";
import { showError } from "./errors.js";
import { api } from "./http.js";
import { previewOf } from "./conversations.js";
import { openConversation, loadOlder } from "./open-conversation.js";
import { highlightFound } from "./message-rendering.js";

const SEARCH_PAGE_SIZE = 20;
const FOUND_HIGHLIGHT_MS = 2000; // a message opened from the search results stands out this long
const FOUND_MAX_PAGES = 20; // pages of history loaded at most to reach a search result

let searchAbort = null;
let searchCursor = null;

el.messageSearchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  searchMessages();
});
el.messageSearch.addEventListener("input", () => {
  if (!el.messageSearch.value.trim()) closeSearch();
});
el.messageSearch.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    el.messageSearch.value = "";
    closeSearch();
  }
});
el.searchMore.addEventListener("click", () => searchMessages({ more: true }));

/** Back to the chats: the results go, the conversation list comes back. */
function closeSearch() {
  if (searchAbort) searchAbort.abort();
  searchCursor = null;
  el.searchList.replaceChildren();
  el.searchResults.hidden = true;
  delete el.sidebar.dataset.view;
}

/** `GET /messages/search` over every conversation; `more` appends the next page. */
async function searchMessages({ more = false } = {}) {
  const q = el.messageSearch.value.trim();
  if (!q) {
    closeSearch();
    return;
  }
  if (searchAbort) searchAbort.abort();
  const abort = new AbortController();
  searchAbort = abort;
  const query = new URLSearchParams({ q, limit: String(SEARCH_PAGE_SIZE) });
  if (more && searchCursor) query.set("cursor", searchCursor);
  try {
    const page = await api("GET", `/messages/search?${query}`, undefined, { signal: abort.signal });
    if (abort.signal.aborted) return;
    const items = page.items.map(searchItem);
    if (more) el.searchList.append(...items);
    else el.searchList.replaceChildren(...items);
    searchCursor = page.next_cursor || null;
    el.searchMore.hidden = !searchCursor;
    el.searchEmpty.hidden = el.searchList.children.length > 0;
    el.searchResults.hidden = false;
    el.sidebar.dataset.view = "search";
  } catch (err) {
    showError(err);
  }
}

function searchItem(message) {
  const conversation = state.conversations.get(message.conversation_id);
  const peer = conversation && conversation.peer ? conversation.peer.display_name : null;
  const who = isMe(message.sender) ? "You: " : "";
  return h("li", null,
    h("button", { type: "button", class: "search-item", onclick: () => showFound(message) },
      h("span", { class: "name", text: peer || `Conversation ${message.conversation_id}` }),
      h("time", { class: "muted", datetime: message.created_at, text: formatWhen(message.created_at) }),
      h("span", { class: "preview", text: who + previewOf(message) })));
}

/** Open the message's conversation, page back until it is loaded, bring it into view. */
async function showFound(message) {
  if (state.currentId !== message.conversation_id) {
    await openConversation(message.conversation_id);
  } else {
    el.layout.dataset.view = "conversation";
  }
  const selector = `[data-id="${Number(message.id)}"]`;
  const generation = state.openGeneration;
  for (let pages = 0; pages < FOUND_MAX_PAGES; pages++) {
    if (el.messageList.querySelector(selector) || generation !== state.openGeneration) break;
    const oldest = state.messages.find((m) => m.id !== undefined && m.id !== null);
    if (!state.hasOlder || !oldest || oldest.id < message.id) break; // loaded, or not shown here
    await loadOlder();
  }
  const node = el.messageList.querySelector(selector);
  if (node) {
    node.scrollIntoView({ block: "center" });
    highlightFound(message.id, FOUND_HIGHLIGHT_MS);
  }
}
