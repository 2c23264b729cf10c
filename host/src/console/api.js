// The agent's /v1 API as the console uses it: every call carries the bearer
// token the operator typed in, kept in this tab's sessionStorage only (never
// in a URL, never in a cookie).

const TOKEN_KEY = "warden-token";

/** A refusal of the agent (or no answer at all), with the status to show. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  /** Whether the token is what was refused (ask for it again). */
  get tokenRefused() {
    return this.status === 401;
  }
  /** The sentence shown to the operator. */
  describe() {
    if (this.status === 401) return `the agent refused the token: 401 ${this.message}`;
    if (this.status === 0) return `the agent did not answer: ${this.message}`;
    return `the agent answered ${this.status}: ${this.message}`;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value.trim());
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function headers(body) {
  const h = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) h["Content-Type"] = "application/json";
  return h;
}

/** Call the API; resolves with the JSON answer, rejects with an ApiError. */
export async function call(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, String(err.message || err));
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch (_) {
    answer = null;
  }
  if (!response.ok) {
    const message = answer && typeof answer.error === "string" ? answer.error : response.statusText;
    throw new ApiError(response.status, message);
  }
  return answer;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);

/**
 * Follow /v1/events/stream (Server-Sent Events read from fetch()'s body,
 * since EventSource cannot send the Authorization header). Calls onEvent
 * with each event (its `seq` added) and onState with "live",
 * "reconnecting" or an ApiError; reconnects after a second, resuming
 * after the last event seen. Returns a function that stops it.
 */
export function follow(onEvent, onState) {
  let after = null;
  let stopped = false;
  let controller = null;
  async function once() {
    controller = new AbortController();
    const query = after === null ? "limit=0" : `after=${after}`;
    const response = await fetch(`/v1/events/stream?${query}`, {
      headers: headers(),
      signal: controller.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      let message = response.statusText;
      try {
        message = (await response.json()).error || message;
      } catch (_) { /* the status is enough */ }
      throw new ApiError(response.status, message);
    }
    if (after === null) after = 0;
    onState("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseBlock(block);
        if (event) {
          after = event.seq;
          onEvent(event);
        }
      }
    }
  }
  async function loop() {
    while (!stopped) {
      try {
        await once();
        if (!stopped) onState("reconnecting");
      } catch (err) {
        if (stopped) return;
        if (err instanceof ApiError && err.tokenRefused) {
          onState(err);
          return;
        }
        onState("reconnecting");
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  loop();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}

/** One Server-Sent Events block: `id: N` and `data: JSON` lines. */
function parseBlock(block) {
  let id = null;
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("id:")) id = Number(line.slice(3).trim());
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (id === null || data === "") return null;
  try {
    const event = JSON.parse(data);
    event.seq = id;
    return event;
  } catch (_) {
    return null;
  }
}
