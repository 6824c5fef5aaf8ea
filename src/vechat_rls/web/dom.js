// dom.js — the page's elements (index.html), looked up once by id. Modules run after the
// document is parsed (type="module" defers), so every element exists by then.

const $ = (id) => document.getElementById(id);
export const el = {
  signedOut: $("signed-out"), signedOutReason: $("signed-out-reason"),
  tokenForm: $("token-form"), tokenInput: $("token-input"),
  app: $("app"), connection: $("connection"), orgName: $("org-name"), meName: $("me-name"),
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
