// The query API from the browser: the API key lives in localStorage (or ?key= once).
import { fetchEventSource } from "@microsoft/fetch-event-source";

const STORE = "flowlog.apiKey";

export function initKey() {
  const params = new URLSearchParams(window.location.search);
  if (params.get("key")) {
    localStorage.setItem(STORE, params.get("key"));
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? `?${rest}` : "") +
                         window.location.hash);
  }
}

export function setKey(key) { localStorage.setItem(STORE, key); }
export function hasKey() { return Boolean(localStorage.getItem(STORE)); }

function headers() { return { "X-API-Key": localStorage.getItem(STORE) || "" }; }

export class ApiError extends Error {
  constructor(status, detail) { super(`${status}: ${detail}`); this.status = status; }
}

export async function get(path, params = {}) {
  const url = new URL(`/api${path}`, window.location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const r = await fetch(url, { headers: headers() });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const d = body.detail ?? body.error ?? r.statusText;
    throw new ApiError(r.status, typeof d === "string" ? d : JSON.stringify(d));
  }
  return body;
}

// Server-Sent Events with the API key header (EventSource cannot send headers);
// Last-Event-ID is sent on reconnect by the library, so nothing is missed.
export function live(path, onStatus, signal) {
  fetchEventSource(`/api${path}`, {
    headers: headers(), signal, openWhenHidden: true,
    onmessage(msg) { if (msg.event === "status") onStatus(JSON.parse(msg.data), msg.id); },
    onerror() { return 2000; }, // retry in 2 s
  }).catch(() => {});
}
