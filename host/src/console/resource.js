// One resource's page: its type and version, its properties against the
// type's schema, its timers and restart policy, its checks, and its recent
// events.

import { get } from "./api.js";
import { h, link, stateBadge, table, when } from "./dom.js";
import { failButton, latency } from "./cluster.js";
import { eventsTable, recentEvents } from "./events.js";

const TIMERS = [
  ["pending_timeout_ms", "Online/offline may take"],
  ["looks_alive_interval_ms", "Looks-alive check every"],
  ["is_alive_interval_ms", "Is-alive check every"],
  ["check_timeout_ms", "A check may take"],
  ["terminate_timeout_ms", "Terminate may take"],
];

function ms(value) {
  return typeof value === "number" ? `${value} ms` : "the type's default";
}

function propertiesTable(configured, type) {
  const schema = type ? type.properties : [];
  const names = new Set([...schema.map((p) => p.name), ...Object.keys(configured || {})]);
  const rows = [...names].sort().map((name) => {
    const spec = schema.find((p) => p.name === name);
    const value = configured && name in configured ? JSON.stringify(configured[name]) : "(default)";
    return [h("code", null, name), value,
      spec ? spec.kind : "not in the type's schema",
      spec ? (spec.required ? "required" : "optional") : "",
      spec && spec.default !== "" ? spec.default : "",
      spec ? spec.description : ""];
  });
  return table("Properties", ["Property", "Value", "Kind", "Required", "Default", "Description"], rows,
    { id: "properties" });
}

/** The resource view. */
export async function resourceView(ctx, name) {
  let group = null;
  let live = null;
  for (const g of ctx.status.groups) {
    const r = g.resources.find((x) => x.name === name);
    if (r) { group = g; live = r; }
  }
  const configured = ctx.config.resources.find((r) => r.name === name);
  if (!live || !configured) {
    return h("section", null, h("h2", null, `No resource ${name}`),
      h("p", null, "It may have been removed. ", link("#/cluster", "Back to the cluster")));
  }
  const [plugins, events, checks] = await Promise.all([
    get("/v1/plugins"),
    recentEvents({ resource: name }, 20),
    recentEvents({ resource: name, event: "check" }, 1),
  ]);
  const type = plugins.find((p) => p.name === configured.type);
  const restart = configured.restart || {};
  const lastCheck = checks[checks.length - 1];
  return h("section", { "aria-labelledby": "resource-title" },
    h("h2", { id: "resource-title" }, `Resource ${name} `, stateBadge(live.state)),
    h("p", null, "Group ", link(`#/group/${encodeURIComponent(group.name)}`, group.name),
      ` · type ${configured.type} version ${live.version}`,
      type ? ` (contract ${type.contract})` : "",
      configured.depends_on.length ? ` · depends on ${configured.depends_on.join(", ")}` : "",
      live.reason ? ` · reason: ${live.reason}` : ""),
    failButton(ctx, name),
    propertiesTable(configured.properties, type),
    table("Timers", ["Timer", "Value"], [
      ...TIMERS.map(([key, label]) => [label, ms(configured[key])]),
      ["Memory limit", configured.memory_limit_mib ? `${configured.memory_limit_mib} MiB` : "the node's default"],
      ["On failure", `${restart.action ?? "?"}: at most ${restart.threshold ?? "?"} in ${restart.period_s ?? "?"} s, ` +
        `restarted after ${restart.delay_ms ?? "?"} ms, then a back-off of ${restart.backoff_ms ?? "?"} ms ` +
        `doubling to ${restart.max_backoff_ms ?? "?"} ms`],
    ], { id: "timers" }),
    table("Checks", ["Checks run", "Instances", "Failures in period", "Last check", "Last failed check"], [[
      String(live.checks), String(live.instances), String(live.failures_in_period),
      live.last_check
        ? `${live.last_check.healthy ? "passed" : "failed"} in ` +
          `${latency(live.last_check.latency_us)}, ${when(live.last_check.at_ms)}`
        : live.state_from === "owner-reports" ? `seen on ${group.owner} only` : "none yet",
      lastCheck ? `${lastCheck.check}: ${lastCheck.reason ?? "failed"}` : "none recorded",
    ]], { id: "checks" }),
    h("h3", null, "Recent events"),
    events.length ? eventsTable(events, "resource-events") : h("p", null, "No events yet."));
}
