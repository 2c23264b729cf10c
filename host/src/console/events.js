// The event history with filters (resource, group, kind, free text) and
// times as people read them; new events appear as the stream brings them.

import { get } from "./api.js";
import { ago, h, link, table, when } from "./dom.js";

const KINDS = ["state", "check", "cut-off", "process-exited", "policy", "plugin", "copy", "terminate-failed"];
const LIMIT = 500;

/** The filters, kept across refreshes of the view. */
const filters = { resource: "", group: "", kind: "", text: "" };

/** The words of an event other than its kind, subject and time. */
export function details(event) {
  const rest = Object.entries(event)
    .filter(([k]) => !["at_ms", "event", "resource", "seq"].includes(k));
  if (event.event === "state") {
    return `${event.from} → ${event.to}${event.reason ? `: ${event.reason}` : ""}`;
  }
  if (event.event === "check" && typeof event.latency_us === "number") {
    const ms = (event.latency_us / 1000).toFixed(1);
    return `${event.check} ${event.healthy ? "passed" : "failed"} in ${ms} ms${event.reason ? `: ${event.reason}` : ""}`;
  }
  return rest.map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(" · ");
}

/** The history's newest events, as filtered; `query` narrows on the agent. */
export async function recentEvents(query, limit) {
  const params = new URLSearchParams({ limit: String(limit) });
  for (const [k, v] of Object.entries(query)) if (v) params.set(k, v);
  return get(`/v1/events?${params}`);
}

/** A table of events, newest first. */
export function eventsTable(events, id) {
  return table(null, ["When", "Kind", "Subject", "What happened"],
    [...events].reverse().map((e) => [
      h("time", { datetime: new Date(e.at_ms).toISOString(), title: ago(e.at_ms) }, when(e.at_ms)),
      e.event, e.resource ? link(`#/resource/${encodeURIComponent(e.resource)}`, e.resource) : "",
      details(e),
    ]), { id, class: "events" });
}

function field(ctx, key, label, control) {
  control.setAttribute("id", `filter-${key}`);
  control.dataset.key = `filter-${key}`;
  control.value = filters[key];
  control.addEventListener(control.tagName === "SELECT" ? "change" : "input", () => {
    filters[key] = control.value;
    ctx.refresh();
  });
  return h("span", { class: "field" }, h("label", { for: `filter-${key}` }, label), control);
}

function select(values, anyLabel) {
  return h("select", null, h("option", { value: "" }, anyLabel), values.map((v) => h("option", { value: v }, v)));
}

/** The events view. */
export async function eventsView(ctx) {
  const groupOf = new Map(ctx.config.resources.map((r) => [r.name, r.group]));
  const events = await recentEvents({ resource: filters.resource, event: filters.kind }, LIMIT);
  const text = filters.text.toLowerCase();
  const shown = events.filter((e) =>
    (!filters.group || groupOf.get(e.resource) === filters.group) &&
    (!text || JSON.stringify(e).toLowerCase().includes(text)));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter the events" },
    field(ctx, "resource", "Resource", select(ctx.config.resources.map((r) => r.name), "any resource")),
    field(ctx, "group", "Group", select(ctx.config.groups.map((g) => g.name), "any group")),
    field(ctx, "kind", "Kind", select(KINDS, "any kind")),
    field(ctx, "text", "Text", h("input", { type: "search", placeholder: "words in the event" })));
  form.addEventListener("submit", (e) => e.preventDefault());
  return h("section", { "aria-labelledby": "events-title" },
    h("h2", { id: "events-title" }, "Events"),
    form,
    h("p", { id: "events-count", role: "status" },
      `${shown.length} of the ${events.length} newest matching events (at most ${LIMIT} are read)`),
    shown.length ? eventsTable(shown, "events") : h("p", null, "No event matches."));
}
