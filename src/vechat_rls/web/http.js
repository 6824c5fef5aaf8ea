// http.js — calls to /api/v1 with the bearer token: problem+json errors become ApiError,
// safe requests are retried, a 401 signs out.

import { state } from "./state.js";
import { sleep } from "./helpers.js";
import { ApiError } from "./errors.js";
import { signOut } from "./sign-in.js";

export const API = "/api/v1";

const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "PATCH", "DELETE"]);
const RETRY_MS = [300, 1000, 2500];

/**
 * One API call; a request that may safely be repeated (`retry`, by default the idempotent
 * methods) is repeated on 429/502/503/504 and network errors, after `Retry-After` when given.
 */
export async function api(method, path, body, options = {}) {
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
