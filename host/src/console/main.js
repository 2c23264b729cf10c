// The console's shell: the token form, the router (#/view/name in the
// fragment, never the token), the live event stream (and a poll of the
// status for what the stream does not carry), and refreshing the view in
// place when the agent reports a change.

import { ApiError, follow, forgetToken, get, setToken, token } from "./api.js";
import { h } from "./dom.js";
import { clusterView } from "./cluster.js";
import { groupView } from "./graph.js";
import { eventsView } from "./events.js";
import { resourceView } from "./resource.js";
import { componentsView, pluginsView } from "./plugins.js";

// Every uncaught error, for the operator's notice and the browser tests.
window.wardenErrors = [];
window.addEventListener("error", (e) => window.wardenErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.wardenErrors.push(String(e.reason)));

const VIEWS = {
  cluster: clusterView,
  group: groupView,
  events: eventsView,
  resource: resourceView,
  plugins: pluginsView,
  components: componentsView,
};

const view = document.getElementById("view");
const live = document.getElementById("live");
const notice = document.getElementById("notice");
let stopStream = null;
let refreshTimer = null;
let rendering = Promise.resolve();
/** Listeners a view registers for events as they arrive (cleared on navigation). */
const eventListeners = new Set();

/** What every view gets: the shared state and the ways to act. */
const ctx = {
  status: null,
  config: null,
  /** Show the outcome of an action; refresh what it changed. */
  async act(label, run) {
    try {
      const answer = await run();
      say(`${label}: ${answer && answer.ok ? answer.ok : "done"}`, "ok");
    } catch (err) {
      if (err instanceof ApiError && err.tokenRefused) return askToken(err.describe());
      say(`${label}: ${err instanceof ApiError ? err.describe() : err}`, "error");
    }
    scheduleRefresh();
  },
  onEvent(listener) {
    eventListeners.add(listener);
  },
  refresh: () => scheduleRefresh(),
};

function say(text, kind) {
  notice.textContent = text;
  notice.className = `notice-${kind}`;
  notice.hidden = false;
}

/** The form that asks for the token; `why` says what went wrong, if anything. */
function askToken(why) {
  if (stopStream) stopStream();
  stopStream = null;
  live.textContent = "not connected";
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true });
  const form = h("form", { id: "token-form", class: "card" },
    h("h2", null, "Connect to the agent"),
    why ? h("p", { id: "token-error", class: "error", role: "alert" }, why) : null,
    h("p", null, "Enter the admin API token (",
      h("code", null, "agent --dev"), " prints the file that holds it). It is kept in this tab only."),
    h("label", { for: "token" }, "Token "), input, " ",
    h("button", { type: "submit", class: "primary" }, "Connect"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setToken(input.value);
    start();
  });
  view.replaceChildren(form);
  input.focus();
}

function route() {
  const [name, ...rest] = (location.hash.replace(/^#\/?/, "") || "cluster").split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  return { render: VIEWS[name] || clusterView, arg };
}

/** Fetch the status and configuration, then draw the current view in place. */
async function render() {
  const { render: draw, arg } = route();
  const focusKey = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.key : null;
  try {
    [ctx.status, ctx.config] = await Promise.all([get("/v1/status"), get("/v1/config")]);
    document.getElementById("node-name").textContent = `· node ${ctx.status.node}`;
    eventListeners.clear();
    const content = await draw(ctx, arg);
    // The same picture as shown: keep the shown one (its focus, its
    // selection, a button under the pointer).
    const shown = view.firstElementChild;
    if (shown && shown.outerHTML === content.outerHTML) return true;
    view.replaceChildren(content);
    if (focusKey) {
      const again = view.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
    view.dataset.rendered = String(Date.now());
  } catch (err) {
    if (err instanceof ApiError && err.tokenRefused) {
      forgetToken();
      askToken(err.describe());
    } else {
      say(err instanceof ApiError ? err.describe() : String(err), "error");
    }
    return false;
  }
  return true;
}

function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    rendering = rendering.then(render);
  }, 100);
}

async function start() {
  notice.hidden = true;
  if (!token()) return askToken(null);
  if (!(await render())) return;
  if (stopStream) stopStream();
  stopStream = follow((event) => {
    for (const listener of eventListeners) listener(event);
    scheduleRefresh();
  }, (state) => {
    if (state instanceof ApiError) {
      forgetToken();
      askToken(state.describe());
    } else {
      live.textContent = state === "live" ? "live: changes appear as they happen" : "reconnecting to the agent…";
      live.dataset.stream = state;
      // Whatever happened while the stream was down.
      if (state === "live") scheduleRefresh();
    }
  });
}

/**
 * What the event stream does not carry (a group's state or owner decided
 * through the cluster's log, a node paused elsewhere): the status is read
 * every second and the view redrawn when it differs from what is shown.
 */
const STATUS_POLL_MS = 1000;
setInterval(async () => {
  if (!stopStream || document.hidden || refreshTimer) return;
  try {
    const status = await get("/v1/status");
    if (JSON.stringify(status) !== JSON.stringify(ctx.status)) scheduleRefresh();
  } catch (_) {
    // The stream's state line and the next refresh say what is wrong.
  }
}, STATUS_POLL_MS);

window.addEventListener("hashchange", () => {
  notice.hidden = true;
  if (token()) rendering = rendering.then(render).then(() => view.focus());
});

start();
