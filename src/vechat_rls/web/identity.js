// identity.js — where and who the signed-in user is, as the page shows it at every width: the
// organisation (the token's optional `org_name` claim, else its id), the user's name, the title.
// `org_name` is for display only: nothing is decided by it, and it is not stored or sent apart
// from the token.

import { el } from "./dom.js";
import { state } from "./state.js";

const ORG_NAME_MAX_CHARS = 200; // like the `name` claim's bound on the server

/** The `org_name` claim, trimmed and bounded, or null when it is missing, empty or not text. */
export function organisationNameFrom(claims) {
  const name = claims && typeof claims.org_name === "string" ? claims.org_name.trim() : "";
  return name ? Array.from(name).slice(0, ORG_NAME_MAX_CHARS).join("") : null;
}

export function organisationLabel() {
  return state.organisationName || `Organisation ${state.me.organisation_id}`;
}

export function userLabel() {
  return state.me.display_name || `${state.me.user_type} ${state.me.user_id}`;
}

/** The header's organisation and user; the full text in `title` where it is cut short. */
export function renderIdentity() {
  const organisation = organisationLabel();
  const user = userLabel();
  el.orgName.textContent = organisation;
  el.orgName.title = organisation;
  el.meName.textContent = user;
  el.meName.title = user;
  renderTitle(0);
}

/** "(3) Velosi Logistics — vechat": two tabs of two organisations differ in the tab strip. */
export function renderTitle(unread) {
  const where = state.me ? `${organisationLabel()} — vechat` : "vechat";
  document.title = unread ? `(${unread}) ${where}` : where;
}
