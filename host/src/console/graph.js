// One group's page: its verbs and its dependency graph drawn as an SVG
// picture. Layered by dependency depth: a resource that depends on nothing
// is in the first row, a resource in row n+1 depends on one in row n; each
// resource is a box with its name and its state written in it, each
// dependency an arrow from the resource to what it needs.

import { h, link, stateBadge, svg, table } from "./dom.js";
import { failButton, groupActions } from "./cluster.js";

const BOX_W = 180;
const BOX_H = 52;
const GAP_X = 30;
const GAP_Y = 60;
const PAD = 20;

/** Each resource's depth: 0 without dependencies in the group, else 1 + the deepest. */
export function depths(resources, dependsOn) {
  const names = new Set(resources.map((r) => r.name));
  const depth = new Map();
  function of(name, seen) {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0; // a cycle the agent would refuse; do not loop
    seen.add(name);
    const deps = (dependsOn.get(name) || []).filter((d) => names.has(d));
    const d = deps.length ? 1 + Math.max(...deps.map((x) => of(x, seen))) : 0;
    depth.set(name, d);
    return d;
  }
  for (const r of resources) of(r.name, new Set());
  return depth;
}

/**
 * The most of a name a box holds (14 px text in a 180 px box); a longer
 * name (up to 64 characters) is cut with an ellipsis there, and is whole
 * in the box's title and in the table under the picture.
 */
const BOX_CHARS = 20;

function boxLabel(name) {
  return name.length > BOX_CHARS ? `${name.slice(0, BOX_CHARS - 1)}…` : name;
}

/** The SVG picture of a group's resources and their dependencies. */
export function dependencyGraph(group, config) {
  const dependsOn = new Map(config.resources.map((r) => [r.name, r.depends_on || []]));
  const depth = depths(group.resources, dependsOn);
  const rows = [];
  for (const r of group.resources) {
    const d = depth.get(r.name);
    (rows[d] = rows[d] || []).push(r);
  }
  const widest = Math.max(1, ...rows.map((row) => (row ? row.length : 0)));
  const width = PAD * 2 + widest * BOX_W + (widest - 1) * GAP_X;
  const height = PAD * 2 + rows.length * BOX_H + Math.max(0, rows.length - 1) * GAP_Y;
  const where = new Map();
  rows.forEach((row, d) => {
    const rowWidth = row.length * BOX_W + (row.length - 1) * GAP_X;
    const left = (width - rowWidth) / 2;
    row.forEach((r, i) => where.set(r.name, { x: left + i * (BOX_W + GAP_X), y: PAD + d * (BOX_H + GAP_Y) }));
  });
  const edges = [];
  for (const r of group.resources) {
    for (const dep of dependsOn.get(r.name) || []) {
      const from = where.get(r.name);
      const to = where.get(dep);
      if (!from || !to) continue;
      edges.push(svg("line", {
        class: "edge", "data-from": r.name, "data-to": dep,
        x1: from.x + BOX_W / 2, y1: from.y, x2: to.x + BOX_W / 2, y2: to.y + BOX_H + 2,
        "marker-end": "url(#arrow)",
      }, svg("title", null, `${r.name} depends on ${dep}`)));
    }
  }
  const boxes = group.resources.map((r) => {
    const { x, y } = where.get(r.name);
    const state = String(r.state);
    return svg("a", { href: `#/resource/${encodeURIComponent(r.name)}`, class: "box", "data-resource": r.name },
      svg("title", null, `${r.name}: ${state}`),
      svg("rect", { x, y, width: BOX_W, height: BOX_H, rx: 6, class: `state-${state.toLowerCase()}` }),
      svg("text", { x: x + BOX_W / 2, y: y + 21, class: "name" }, boxLabel(r.name)),
      svg("text", { x: x + BOX_W / 2, y: y + 40, class: "state-text", "data-state": state }, state));
  });
  return svg("svg", {
    id: "graph", role: "img", viewBox: `0 0 ${width} ${height}`, width, height,
    "aria-label": `Dependency graph of group ${group.name}: ${group.resources.length} resources`,
  },
  svg("defs", null, svg("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse",
  }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))),
  edges, boxes);
}

/** The group view: its state, verbs, graph and resources. */
export async function groupView(ctx, name) {
  const group = ctx.status.groups.find((g) => g.name === name);
  if (!group) {
    return h("section", null, h("h2", null, `No group ${name}`),
      h("p", null, "It may have been removed. ", link("#/cluster", "Back to the cluster")));
  }
  const configured = ctx.config.groups.find((g) => g.name === name) || {};
  return h("section", { "aria-labelledby": "group-title" },
    h("h2", { id: "group-title" }, `Group ${group.name} `, stateBadge(group.state)),
    h("p", null, `Owner: ${group.owner ?? "none"} · failovers in period: ${group.failovers_in_period}`,
      configured.preferred_owners && configured.preferred_owners.length
        ? ` · preferred owners: ${configured.preferred_owners.join(", ")}` : "",
      group.reason ? ` · reason: ${group.reason}` : ""),
    groupActions(ctx, group.name),
    h("h3", null, "Dependencies"),
    h("p", { class: "hint" }, "Each arrow points from a resource to what it needs; select a box to open the resource."),
    h("div", { class: "graph" }, dependencyGraph(group, ctx.config)),
    table("Resources", ["Resource", "Type", "State", "Failures in period", "Actions"],
      group.resources.map((r) => [
        link(`#/resource/${encodeURIComponent(r.name)}`, r.name), `${r.type} ${r.version}`,
        stateBadge(r.state), String(r.failures_in_period), failButton(ctx, r.name),
      ])));
}
