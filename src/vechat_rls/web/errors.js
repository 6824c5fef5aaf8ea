// errors.js — ApiError and the dismissable error bar at the top of the page.

import { el } from "./dom.js";

const ERROR_VISIBLE_MS = 10000;

export class ApiError extends Error {
  constructor(status, detail, { retryable = false, retryAfterS = null } = {}) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.retryable = retryable;
    this.retryAfterS = retryAfterS;
  }
}

let errorTimer = null;
export function showError(error) {
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

el.errorClose.addEventListener("click", hideError);
