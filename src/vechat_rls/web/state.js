// state.js — what this tab knows and shares between modules: the signed-in user, conversations,
// presence, the open conversation's messages, the outbox, the socket. A module's private
// bookkeeping (timers, drafts, caches) stays in that module.

import { key } from "./helpers.js";

export const state = {
  token: null,
  me: null,
  organisationName: null, // the token's `org_name` claim, shown and never used otherwise
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

export const isMe = (p) => !!(p && state.me && p.user_id === state.me.user_id && p.user_type === state.me.user_type);
export const storageKey = (name) => `vechat.${name}.${state.me.organisation_id}.${key(state.me)}`;
