// The cluster at a glance: every node with its state (this node with pause
// / resume / drain), every group with its owner and state (online / offline
// / move to a chosen node), and every resource with its state, failures and
// last check's latency (fail, for fault injection).

import { post } from "./api.js";
import { h, link, stateBadge, table } from "./dom.js";
import { moveGroup } from "./move.js";

/** A button with a stable key, so focus survives a live refresh. */
export function button(key, label, onclick, extra) {
  return h("button", { type: "button", "data-key": key, onclick, ...extra }, label);
}

/** How long a check took, as people read it. */
export function latency(us) {
  const ms = us / 1000;
  return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
}

/**
 * Every node of the cluster with its state (alone: this node). The verbs
 * act on this console's node only: the API is that node's.
 */
function nodeSection(ctx) {
  const s = ctx.status;
  const nodes = s.nodes && s.nodes.length ? s.nodes
    : [{ name: s.node, state: s.paused ? "paused" : "up", this_node: true, recovery_actions: s.recovery_actions, reason: null }];
  const verb = (name) => button(`node-${name}`, name[0].toUpperCase() + name.slice(1),
    () => ctx.act(`node ${name}`, () => post(`/v1/node/${name}`)));
  const rows = nodes.map((n) => [
    n.name,
    stateBadge(n.state),
    n.recovery_actions ? "on" : "off",
    n.reason ?? "",
    n.this_node
      ? h("span", { class: "actions" }, h("span", { class: "hint" }, "this console's node: "),
        verb("pause"), verb("resume"), verb("drain"))
      : h("span", { class: "hint" }, `from ${n.name}'s console or CLI`),
  ]);
  return h("section", { "aria-labelledby": "nodes-title" },
    h("h2", { id: "nodes-title" }, "Nodes"),
    table(null, ["Node", "State", "Recovery actions", "Reason", "Actions"], rows, { id: "nodes" }));
}

/** The verbs of one group, as buttons. */
export function groupActions(ctx, name) {
  const path = `/v1/groups/${encodeURIComponent(name)}`;
  return h("span", { class: "actions" },
    button(`group-online-${name}`, "Online", () => ctx.act(`online ${name}`, () => post(`${path}/online`))),
    button(`group-offline-${name}`, "Offline", () => ctx.act(`offline ${name}`, () => post(`${path}/offline`))),
    button(`group-move-${name}`, "Move…", () => moveGroup(ctx, name)));
}

/** The fault-injection button of one resource. */
export function failButton(ctx, name) {
  return button(`fail-${name}`, "Fail", () =>
    ctx.act(`fail ${name}`, () => post(`/v1/resources/${encodeURIComponent(name)}/fail`)));
}

function groupsSection(ctx) {
  const rows = ctx.status.groups.map((g) => [
    link(`#/group/${encodeURIComponent(g.name)}`, g.name),
    stateBadge(g.state),
    g.owner ?? "none",
    String(g.failovers_in_period),
    g.reason ?? "",
    groupActions(ctx, g.name),
  ]);
  return h("section", { "aria-labelledby": "groups-title" },
    h("h2", { id: "groups-title" }, "Groups"),
    rows.length
      ? table(null, ["Group", "State", "Owner", "Failovers in period", "Reason", "Actions"], rows, { id: "groups" })
      : h("p", null, "No groups are configured."));
}

/** A resource's state, and whose word it is when another node runs it. */
function resourceState(r, owner) {
  if (r.state_from !== "owner-reports") return stateBadge(r.state);
  return h("span", null, stateBadge(r.state), " ", h("span", { class: "hint" }, `as ${owner} reported`));
}

/** A resource's last check: how long it took and when, or why none is shown. */
function lastCheck(r, owner) {
  const c = r.last_check;
  if (c) {
    const at = new Date(c.at_ms).toLocaleTimeString();
    return h("span", { class: "latency", title: `${c.healthy ? "passed" : "failed"} at ${at}` },
      `${latency(c.latency_us)}${c.healthy ? "" : " (failed)"} · ${at}`);
  }
  if (r.state_from === "owner-reports") return h("span", { class: "hint" }, `seen on ${owner} only`);
  return h("span", { class: "hint" }, "none yet");
}

function resourcesSection(ctx) {
  const rows = [];
  let reported = false;
  for (const g of ctx.status.groups) {
    for (const r of g.resources) {
      reported = reported || r.state_from === "owner-reports";
      rows.push([
        link(`#/resource/${encodeURIComponent(r.name)}`, r.name),
        g.name, `${r.type} ${r.version}`, resourceState(r, g.owner),
        String(r.failures_in_period), String(r.checks), lastCheck(r, g.owner), r.reason ?? "",
        failButton(ctx, r.name),
      ]);
    }
  }
  return h("section", { "aria-labelledby": "resources-title" },
    h("h2", { id: "resources-title" }, "Resources"),
    reported ? h("p", { class: "hint", id: "reported-note" },
      "A resource whose group another node owns shows that node's reports, as the cluster's log carries them " +
      "to every node. The log does not carry health checks: their count and latency are seen on the owner's console.")
      : null,
    rows.length
      ? table(null, ["Resource", "Group", "Type", "State", "Failures in period", "Checks", "Last check", "Reason", "Actions"],
        rows, { id: "resources" })
      : h("p", null, "No resources are configured."));
}

/** The cluster view. */
export async function clusterView(ctx) {
  return h("div", { class: "cluster" }, nodeSection(ctx), groupsSection(ctx), resourcesSection(ctx));
}
