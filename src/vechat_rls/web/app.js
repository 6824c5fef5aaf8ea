// vechat browser client: plain DOM, no build step. All user text goes through textContent.
"use strict";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "vechat.token";
  const PAGE_SIZE = 50;
  const TYPING_REFRESH_MS = 3000; // re-send "typing" this often while typing (server expiry: 5 s)
  const TYPING_IDLE_MS = 3000; // stop typing after this long without a keystroke
  const TYPING_EXPIRY_MS = 5000; // a peer's indicator disappears without a refresh
  const PING_MS = 25000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const SEND_RETRIES_MS = [500, 1000, 2000, 4000, 8000];
  const ERROR_VISIBLE_MS = 10000;
  const MAX_UPLOAD_BYTES = 10 * 1024 * 1024;
  const SEARCH_PAGE_SIZE = 20;
  const FOUND_HIGHLIGHT_MS = 2000; // a message opened from the search results stands out this long
  const FOUND_MAX_PAGES = 20; // pages of history loaded at most to reach a search result
  const MAX_LOCATION_ACCURACY_M = 99999999; // the API's bound on `accuracy`
  const MAX_VOICE_BYTES = 5 * 1024 * 1024; // VECHAT_MAX_VOICE_BYTES' default
  const MAX_VOICE_S = 300; // a recording stops by itself after this long
  const VOICE_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm"];

  const $ = (id) => document.getElementById(id);
  const el = {
    signedOut: $("signed-out"), signedOutReason: $("signed-out-reason"),
    tokenForm: $("token-form"), tokenInput: $("token-input"),
    app: $("app"), connection: $("connection"), meName: $("me-name"),
    presenceSelect: $("presence-select"), signOut: $("sign-out"),
    error: $("error"), errorText: $("error-text"), errorClose: $("error-close"),
    layout: $("layout"), newChat: $("new-chat"), contactsPanel: $("contacts-panel"),
    contactSearch: $("contact-search"), contactList: $("contact-list"), contactEmpty: $("contact-empty"),
    showArchived: $("show-archived"), conversationList: $("conversation-list"),
    conversationEmpty: $("conversation-empty"),
    paneEmpty: $("pane-empty"), conversation: $("conversation"), back: $("back"),
    peerPresence: $("peer-presence"), peerName: $("peer-name"), peerStatus: $("peer-status"),
    toggleMute: $("toggle-mute"), toggleArchive: $("toggle-archive"),
    deleteConversation: $("delete-conversation"),
    messages: $("messages"), loadOlder: $("load-older"), messageList: $("message-list"),
    typing: $("typing"), composer: $("composer"), attachButton: $("attach-button"),
    attachInput: $("attach-input"), messageInput: $("message-input"),
    locationButton: $("location-button"), recordButton: $("record-button"), recordTime: $("record-time"),
    replyBar: $("reply-bar"), replyPreview: $("reply-preview"), replyCancel: $("reply-cancel"),
    sidebar: $("sidebar"), messageSearchForm: $("message-search-form"),
    messageSearch: $("message-search"), searchResults: $("search-results"),
    searchList: $("search-list"), searchEmpty: $("search-empty"), searchMore: $("search-more"),
  };

  const state = {
    token: null,
    me: null,
    conversations: new Map(), // id -> Conversation (archived and not)
    presence: new Map(), // "type:id" -> {status, last_seen}
    showArchived: false,
    currentId: null,
    messages: [], // the open conversation's messages, by id
    outbox: new Map(), // client_id -> a message being sent (or failed), any conversation
    hasOlder: false,
    loadingOlder: false,
    pinned: true, // the message pane follows new content while scrolled to the bottom
    openGeneration: 0, // ignores late answers for a conversation no longer open
    editingId: null,
    editDraft: "",
    replyTo: null, // the message the next one sent answers: {id, preview}
    typingTimers: new Map(), // conversation id -> timer hiding the peer's indicator
    ws: null,
    wsAttempts: 0,
    wsReconnectTimer: null,
    pingTimer: null,
    readyOnce: false,
    lastSeq: null,
    blobUrls: new Map(), // attachment id -> Promise<blob URL>
    signedOut: false,
  };

  // ------------------------------------------------------------------ helpers

  /** An element; attributes as strings, `on…` as listeners, children as nodes or text. */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child); // strings become text nodes, never markup
    }
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    // Not a secure context (plain http on another host): a v4 UUID from getRandomValues.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  }

  const key = (p) => (p ? `${p.user_type}:${p.user_id}` : "");
  const isMe = (p) => !!(p && state.me && p.user_id === state.me.user_id && p.user_type === state.me.user_type);
  const storageKey = (name) => `vechat.${name}.${state.me.organisation_id}.${key(state.me)}`;

  function formatTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function formatWhen(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    const today = new Date();
    if (date.toDateString() === today.toDateString()) return formatTime(iso);
    return date.toLocaleDateString([], { day: "numeric", month: "short" });
  }

  function formatDay(iso) {
    return new Date(iso).toLocaleDateString([], { weekday: "long", day: "numeric", month: "long", year: "numeric" });
  }

  function formatSize(bytes) {
    if (typeof bytes !== "number") return "";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function tokenClaims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const bytes = Uint8Array.from(atob(part + "===".slice((part.length + 3) % 4)), (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return null;
    }
  }

  // ------------------------------------------------------------------ errors

  class ApiError extends Error {
    constructor(status, detail, { retryable = false, retryAfterS = null } = {}) {
      super(detail);
      this.status = status;
      this.detail = detail;
      this.retryable = retryable;
      this.retryAfterS = retryAfterS;
    }
  }

  let errorTimer = null;
  function showError(error) {
    if (error && error.name === "AbortError") return;
    const text = typeof error === "string" ? error : (error && (error.detail || error.message)) || "Something went wrong.";
    el.errorText.textContent = text;
    el.error.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(hideError, ERROR_VISIBLE_MS);
  }
  function hideError() {
    el.error.hidden = true;
    el.errorText.textContent = "";
  }

  // ------------------------------------------------------------------ HTTP

  const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "PATCH", "DELETE"]);
  const RETRY_MS = [300, 1000, 2500];

  /**
   * One API call; a request that may safely be repeated (`retry`, by default the idempotent
   * methods) is repeated on 429/502/503/504 and network errors, after `Retry-After` when given.
   */
  async function api(method, path, body, options = {}) {
    const retry = options.retry ?? IDEMPOTENT.has(method);
    for (let attempt = 0; ; attempt++) {
      try {
        return await apiOnce(method, path, body, options);
      } catch (err) {
        if (!retry || !(err instanceof ApiError) || !err.retryable || attempt >= RETRY_MS.length || state.signedOut) {
          throw err;
        }
        await sleep(Math.min(err.retryAfterS ? err.retryAfterS * 1000 : RETRY_MS[attempt], 5000));
      }
    }
  }

  async function apiOnce(method, path, body, { raw = false, signal } = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, { method, headers, body: payload, signal, cache: "no-store" });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, "The server cannot be reached. Check your connection.", { retryable: true });
    }
    if (response.status === 401) {
      signOut("Your session has expired or the sign-in link is not valid. Open a new sign-in link.");
      throw new ApiError(401, "Not signed in.");
    }
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`.trim();
      try {
        const problem = await response.json();
        if (problem && typeof problem.detail === "string") detail = problem.detail;
        else if (problem && typeof problem.title === "string") detail = problem.title;
      } catch {
        // not problem+json: keep the status line
      }
      const retryAfter = Number(response.headers.get("Retry-After"));
      throw new ApiError(response.status, detail, {
        retryable: [429, 502, 503, 504].includes(response.status),
        retryAfterS: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
      });
    }
    if (raw) return response;
    if (response.status === 204) return null;
    const type = response.headers.get("Content-Type") || "";
    return type.includes("json") ? response.json() : null;
  }

  // ------------------------------------------------------------------ sign-in

  function takeToken() {
    const url = new URL(location.href);
    const fromUrl = url.searchParams.get("access_token");
    if (fromUrl) {
      sessionStorage.setItem(TOKEN_KEY, fromUrl);
      url.searchParams.delete("access_token");
      // The token leaves the address bar (and the history) at once.
      history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function signOut(reason) {
    if (state.signedOut) return;
    state.signedOut = true;
    // The token, and this tab's cursor, open conversation and status with it.
    for (const name of Object.keys(sessionStorage)) if (name.startsWith("vechat.")) sessionStorage.removeItem(name);
    clearTimeout(state.wsReconnectTimer);
    clearInterval(state.pingTimer);
    if (state.ws) {
      state.ws.onclose = null;
      state.ws.close(1000);
      state.ws = null;
    }
    for (const url of state.blobUrls.values()) url.then((u) => URL.revokeObjectURL(u), () => {});
    state.blobUrls.clear();
    el.app.hidden = true;
    el.signedOut.hidden = false;
    el.signedOutReason.textContent = reason || "You are signed out. Open a sign-in link to continue.";
    document.title = "vechat";
  }

  el.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = el.tokenInput.value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    location.reload();
  });

  el.signOut.addEventListener("click", () => signOut("You signed out."));

  // ------------------------------------------------------------------ presence

  function normalisePresence(value) {
    if (!value) return { status: "offline", last_seen: null };
    if (typeof value === "string") return { status: value, last_seen: null };
    return { status: value.status || "offline", last_seen: value.last_seen || null };
  }

  function presenceOf(participant) {
    return state.presence.get(key(participant)) || { status: "offline", last_seen: null };
  }

  function presenceText(p) {
    if (p.status === "offline") return p.last_seen ? `Last seen ${formatWhen(p.last_seen)}` : "Offline";
    return { online: "Online", away: "Away", busy: "Busy" }[p.status] || p.status;
  }

  function applyPresence(data) {
    state.presence.set(key(data), normalisePresence(data));
    renderConversations();
    renderHeader();
  }

  el.presenceSelect.addEventListener("change", async () => {
    const status = el.presenceSelect.value;
    sessionStorage.setItem(storageKey("presence"), status);
    // Over the socket when it is open: the server then tells the peers at once.
    if (wsSend({ type: "presence", status })) return;
    try {
      await api("PUT", "/presence", { status });
    } catch (err) {
      showError(err);
    }
  });

  // ------------------------------------------------------------------ conversations

  /**
   * Conversations deleted for me in this tab -> the newest message id they had. Events already
   * on their way (read back before the delete committed) must not bring one back; only a newer
   * message does.
   */
  const hiddenThrough = new Map();

  function stillHidden(conversation) {
    if (!hiddenThrough.has(conversation.id)) return false;
    const last = conversation.last_message;
    if (last && last.id > hiddenThrough.get(conversation.id)) {
      hiddenThrough.delete(conversation.id);
      return false;
    }
    return true;
  }

  function storeConversation(conversation) {
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

  async function loadConversations() {
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
  function fetchConversation(id) {
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

  function previewOf(message) {
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

  function renderConversations() {
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
    document.title = unreadTotal ? `(${unreadTotal}) vechat` : "vechat";
  }

  el.showArchived.addEventListener("change", () => {
    state.showArchived = el.showArchived.checked;
    renderConversations();
  });

  function applyConversation(conversation) {
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

  // ------------------------------------------------------------------ the open conversation

  const drafts = new Map(); // conversation id -> unsent text

  function currentConversation() {
    return state.currentId === null ? null : state.conversations.get(state.currentId) || null;
  }

  function renderHeader() {
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

  async function openConversation(id, { focus = true } = {}) {
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
    if (recording) stopRecording({ cancel: true });
    messageNodes.clear();
    el.messageList.replaceChildren();
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

  function closeConversation() {
    stopTyping();
    setReply(null);
    if (recording) stopRecording({ cancel: true });
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

  async function loadOlder() {
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
  function keepPinned() {
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

  // ------------------------------------------------------------------ messages

  function upsertMessage(message, { live = false } = {}) {
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

  function removeMessage(id) {
    state.messages = state.messages.filter((m) => m.id !== id);
  }

  function isNearBottom() {
    return el.messages.scrollHeight - el.messages.scrollTop - el.messages.clientHeight < 80;
  }

  /** A durable message event (or an HTTP answer) for any conversation. */
  function applyMessage(message, eventType = "message.created") {
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

  function applyRead(data) {
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

  // ------------------------------------------------------------------ read receipts

  function paneVisible() {
    return document.visibilityState === "visible" && state.currentId !== null && !el.conversation.hidden;
  }

  let markReadTimer = null;
  function scheduleMarkRead() {
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

  // ------------------------------------------------------------------ rendering messages

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

  function renderMessage(message) {
    const own = isMe(message.sender);
    const classes = ["msg", own ? "own" : "theirs"];
    if (message.pending) classes.push("pending");
    if (message.deleted) classes.push("deleted");
    const bubble = h("div", { class: "bubble" });
    if (message.reply_to && !message.deleted) {
      bubble.append(h("p", { class: "reply", text: `↪ ${message.reply_to.body_preview || previewOf(message.reply_to)}` }));
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

  function renderMessages({ toBottom = false } = {}) {
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
      const signature = JSON.stringify([message, state.editingId === message.id && !message.pending]);
      items.push(cachedNode(key, signature, () => renderMessage(message)));
    }
    for (const key of messageNodes.keys()) if (!used.has(key)) messageNodes.delete(key);
    patchChildren(el.messageList, items);
    el.loadOlder.hidden = !state.hasOlder;
    if (stick) {
      el.messages.scrollTop = el.messages.scrollHeight;
      state.pinned = true;
    }
  }

  // ------------------------------------------------------------------ sending

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
  async function deliver(message) {
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

  function discard(message) {
    state.outbox.delete(message.client_id);
    renderMessages();
  }

  // ------------------------------------------------------------------ replying

  /** The message the next one sent answers (null: none); shown above the composer. */
  function setReply(message) {
    state.replyTo = message && message.id != null ? { id: message.id, preview: previewOf(message) } : null;
    el.replyBar.hidden = !state.replyTo;
    el.replyPreview.textContent = state.replyTo ? `↪ ${state.replyTo.preview}` : "";
  }

  /** A pending message answers the chosen one, if any: the reply is used up. */
  function withReply(message) {
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

  function autoGrow() {
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
  async function sendFile(conversation, file, audio = null) {
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

  // ------------------------------------------------------------------ voice messages

  let recording = null; // {recorder, stream, chunks, started, stopped, timer, conversation, cancelled}

  el.recordButton.addEventListener("click", () => (recording ? stopRecording() : startRecording()));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && recording) stopRecording({ cancel: true });
  });

  /** Record from the microphone until the button is pressed again (or MAX_VOICE_S). */
  async function startRecording() {
    const conversation = currentConversation();
    if (!conversation) return;
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      showError("This browser cannot record voice messages.");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      showError(err && err.name === "NotAllowedError"
        ? "Microphone access is blocked for this page (see the browser's site settings)."
        : "No microphone could be used.");
      return;
    }
    if (recording || currentConversation() !== conversation) {
      stream.getTracks().forEach((track) => track.stop());
      return;
    }
    const type = VOICE_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    const rec = { recorder, stream, chunks: [], started: Date.now(), stopped: null, timer: null, conversation, cancelled: false };
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data && event.data.size) rec.chunks.push(event.data);
    });
    recorder.addEventListener("stop", () => finishRecording(rec));
    recorder.start();
    recording = rec;
    showRecording(true);
    const tick = () => {
      const seconds = Math.floor((Date.now() - rec.started) / 1000);
      el.recordTime.textContent = `● ${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
      if (seconds >= MAX_VOICE_S) stopRecording();
    };
    tick();
    rec.timer = setInterval(tick, 500);
  }

  /** Stop recording: send what was recorded, or drop it (`cancel`). */
  function stopRecording({ cancel = false } = {}) {
    const rec = recording;
    if (!rec) return;
    recording = null;
    rec.cancelled = cancel;
    rec.stopped = Date.now();
    clearInterval(rec.timer);
    showRecording(false);
    if (rec.recorder.state !== "inactive") rec.recorder.stop();
    else finishRecording(rec);
  }

  /** The record button and the timer beside it, while recording (`on`) or not. */
  function showRecording(on) {
    el.recordButton.setAttribute("aria-pressed", String(on));
    el.recordButton.setAttribute("aria-label", on ? "Stop and send the voice message" : "Record a voice message");
    el.recordButton.title = on ? "Stop and send (Esc cancels)" : "Record a voice message";
    el.recordTime.hidden = !on;
    if (!on) el.recordTime.textContent = "";
  }

  function finishRecording(rec) {
    rec.stream.getTracks().forEach((track) => track.stop());
    if (rec.cancelled || !rec.chunks.length) return;
    const type = (rec.recorder.mimeType || "audio/webm").split(";")[0];
    const file = new File(rec.chunks, `voice-message.${type.includes("ogg") ? "ogg" : "webm"}`, { type });
    const seconds = Math.max(1, Math.round(((rec.stopped || Date.now()) - rec.started) / 1000));
    sendFile(rec.conversation, file, { duration_s: seconds });
  }

  // ------------------------------------------------------------------ typing

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

  function stopTyping() {
    clearTimeout(typingIdleTimer);
    if (typingSentAt && typingConversationId !== null) {
      wsSend({ type: "typing", conversation_id: typingConversationId, is_typing: false });
    }
    typingSentAt = 0;
    typingConversationId = null;
  }

  function applyTyping(data) {
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

  function clearPeerTyping(id) {
    if (!state.typingTimers.has(id)) return;
    clearTimeout(state.typingTimers.get(id));
    state.typingTimers.delete(id);
    renderTyping();
    renderConversations();
  }

  function renderTyping() {
    const conversation = currentConversation();
    const typing = conversation && state.typingTimers.has(conversation.id);
    el.typing.textContent = typing ? `${(conversation.peer && conversation.peer.display_name) || "Your contact"} is typing…` : "";
  }

  // ------------------------------------------------------------------ message search

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
      node.classList.add("found");
      setTimeout(() => node.classList.remove("found"), FOUND_HIGHLIGHT_MS);
    }
  }

  // ------------------------------------------------------------------ contacts

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

  // ------------------------------------------------------------------ WebSocket

  function loadSeq() {
    const value = sessionStorage.getItem(storageKey("seq"));
    return value === null ? null : Number(value);
  }

  function saveSeq(seq) {
    state.lastSeq = seq;
    sessionStorage.setItem(storageKey("seq"), String(seq));
  }

  function setConnection(kind, text) {
    el.connection.dataset.state = kind;
    el.connection.textContent = text;
  }

  function wsSend(frame) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    if (state.signedOut) return;
    const query = new URLSearchParams({ access_token: state.token });
    const since = state.lastSeq;
    if (since !== null) query.set("since", String(since));
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let ws;
    try {
      ws = new WebSocket(`${scheme}://${location.host}${API}/ws?${query}`);
    } catch {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    setConnection("connecting", state.wsAttempts ? "Reconnecting…" : "Connecting…");
    ws.onopen = () => {
      clearInterval(state.pingTimer);
      state.pingTimer = setInterval(() => wsSend({ type: "ping" }), PING_MS);
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      handleFrame(frame, since);
    };
    ws.onclose = (event) => {
      clearInterval(state.pingTimer);
      if (state.ws === ws) state.ws = null;
      if (event.code === 4401) {
        signOut("Your session has expired or the sign-in link is not valid. Open a new sign-in link.");
        return;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (state.signedOut) return;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.wsAttempts);
    const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2); // jitter: tabs don't stampede
    state.wsAttempts++;
    setConnection("offline", `Offline — reconnecting in ${Math.ceil(delay / 1000)} s`);
    clearTimeout(state.wsReconnectTimer);
    state.wsReconnectTimer = setTimeout(connect, delay);
  }

  function handleFrame(frame, since) {
    if (typeof frame.seq === "number") {
      if (state.lastSeq !== null && frame.seq <= state.lastSeq) return; // already applied
      saveSeq(frame.seq);
    }
    switch (frame.type) {
      case "ready": {
        const seq = frame.data && typeof frame.data.seq === "number" ? frame.data.seq : null;
        const first = !state.readyOnce;
        state.readyOnce = true;
        state.wsAttempts = 0;
        setConnection("live", "Live");
        if (seq !== null && state.lastSeq !== null && seq < state.lastSeq) {
          // The server's log is behind what this tab saw (a new database): start over from it.
          saveSeq(seq);
          reloadAll();
        } else if (seq !== null && (state.lastSeq === null || seq > state.lastSeq)) {
          saveSeq(seq);
        }
        const chosen = sessionStorage.getItem(storageKey("presence"));
        if (chosen && chosen !== "online") wsSend({ type: "presence", status: chosen });
        if (since === null && !first) reloadAll(); // nothing to resume from: refetch
        break;
      }
      case "reset":
        state.lastSeq = null;
        sessionStorage.removeItem(storageKey("seq"));
        reloadAll();
        break;
      case "message.created":
      case "message.updated":
      case "message.deleted":
        applyMessage(frame.data, frame.type);
        break;
      case "messages.read":
        applyRead(frame.data);
        break;
      case "conversation.updated":
        applyConversation(frame.data);
        break;
      case "typing":
        applyTyping(frame.data);
        break;
      case "presence":
        applyPresence(frame.data);
        break;
      case "ack":
        if (frame.data) applyMessage(frame.data, "message.created");
        break;
      case "error":
        if (frame.data && frame.data.detail) showError(String(frame.data.detail));
        break;
      default:
        break; // pong, and frames this client does not know
    }
  }

  async function reloadAll() {
    try {
      await loadConversations();
      if (state.currentId !== null) {
        if (state.conversations.has(state.currentId)) openConversation(state.currentId, { focus: false });
        else closeConversation();
      }
    } catch (err) {
      showError(err);
    }
  }

  // ------------------------------------------------------------------ settings

  async function applySettings() {
    try {
      const settings = await api("GET", "/settings");
      if (!settings) return;
      const theme = settings.theme === "auto"
        ? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light")
        : settings.theme;
      if (theme) document.documentElement.dataset.theme = theme;
      if (settings.font_size) document.documentElement.dataset.fontSize = settings.font_size;
    } catch {
      // settings are cosmetic here; the defaults stand
    }
  }

  // ------------------------------------------------------------------ start

  el.errorClose.addEventListener("click", hideError);

  async function start() {
    state.token = takeToken();
    if (!state.token) {
      signOut("Open the sign-in link your organisation gave you.");
      return;
    }
    const claims = tokenClaims(state.token);
    if (claims && typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) {
      signOut("This sign-in link has expired. Ask for a new one.");
      return;
    }
    try {
      state.me = await api("GET", "/me");
    } catch (err) {
      if (!state.signedOut) {
        el.signedOut.hidden = false;
        el.signedOutReason.textContent = `Cannot sign in: ${err.detail || err.message}`;
      }
      return;
    }
    el.signedOut.hidden = true;
    el.app.hidden = false;
    el.layout.dataset.view = "list";
    el.meName.textContent = state.me.display_name || `${state.me.user_type} ${state.me.user_id}`;
    el.presenceSelect.value = sessionStorage.getItem(storageKey("presence")) || "online";
    state.lastSeq = loadSeq();
    connect();
    applySettings();
    try {
      await loadConversations();
    } catch (err) {
      showError(err);
    }
    const open = Number(sessionStorage.getItem(storageKey("open")));
    if (open && state.conversations.has(open)) openConversation(open, { focus: false });
  }

  start();
})();
