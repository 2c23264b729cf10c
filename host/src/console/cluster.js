// The cluster at a glance: this node (with pause / resume / drain), every
// group with its owner and state (online / offline / move), and every
// resource with its state and failures (fail, for fault injection).

import { post } from "./api.js";
import { h, link, stateBadge, table } from "./dom.js";
import { confirmDialog } from "./dialog.js";

/** A button with a stable key, so focus survives a live refresh. */
export function button(key, label, onclick, extra) {
  return h("button", { type: "button", "data-key": key, onclick, ...extra }, label);
}

/** The node's line: its name, whether it takes groups, and its verbs. */
function nodeSection(ctx) {
  const s = ctx.status;
  const state = s.paused ? "paused" : "up";
  const verb = (name) => button(`node-${name}`, name[0].toUpperCase() + name.slice(1),
    () => ctx.act(`node ${name}`, () => post(`/v1/node/${name}`)));
  return h("section", { "aria-labelledby": "nodes-title" },
    h("h2", { id: "nodes-title" }, "Nodes"),
    table(null, ["Node", "State", "Recovery actions", "Actions"], [[
      s.node, stateBadge(state), s.recovery_actions ? "on" : "off",
      h("span", { class: "actions" }, verb("pause"), verb("resume"), verb("drain")),
    ]], { id: "nodes" }));
}

/**
 * Move a group to the best other node: ask the policy what would happen
 * (what-if), show it, and move only once the operator confirms.
 */
export async function moveGroup(ctx, group) {
  let actions;
  try {
    const answer = await post("/v1/what-if", { "move-requested": { group, to: null } });
    actions = answer.actions;
  } catch (err) {
    return ctx.act(`what-if move ${group}`, () => Promise.reject(err));
  }
  const body = [
    h("p", null, `What the policy would do if ${group} were moved to the best other node:`),
    actions.length
      ? h("ul", { id: "what-if" }, actions.map((a) => h("li", null, a)))
      : h("p", { id: "what-if" }, "nothing would happen"),
  ];
  if (await confirmDialog(`Move group ${group}?`, body, "Move")) {
    await ctx.act(`move ${group}`, () => post(`/v1/groups/${encodeURIComponent(group)}/move`, {}));
  }
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

function resourcesSection(ctx) {
  const rows = [];
  for (const g of ctx.status.groups) {
    for (const r of g.resources) {
      rows.push([
        link(`#/resource/${encodeURIComponent(r.name)}`, r.name),
        g.name, `${r.type} ${r.version}`, stateBadge(r.state),
        String(r.failures_in_period), String(r.checks), r.reason ?? "",
        failButton(ctx, r.name),
      ]);
    }
  }
  return h("section", { "aria-labelledby": "resources-title" },
    h("h2", { id: "resources-title" }, "Resources"),
    rows.length
      ? table(null, ["Resource", "Group", "Type", "State on this node", "Failures in period", "Checks", "Reason", "Actions"],
        rows, { id: "resources" })
      : h("p", null, "No resources are configured."));
}

/** The cluster view. */
export async function clusterView(ctx) {
  return h("div", { class: "cluster" }, nodeSection(ctx), groupsSection(ctx), resourcesSection(ctx));
}
