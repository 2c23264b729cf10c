// The resource types (plugins) with their versions, swaps and roll-backs,
// and the server components with the requesters that hold them.

import { get, post } from "./api.js";
import { h, stateBadge, table } from "./dom.js";
import { button } from "./cluster.js";
import { eventsTable, recentEvents } from "./events.js";

function versionsOf(name) {
  return get(`/v1/plugins/${encodeURIComponent(name)}/versions`).catch((err) => ({ error: err.describe() }));
}

/** The versions kept of a type, as words: "0.1.0 (active, pinned) · 0.2.0". */
function versionsText(versions) {
  if (!versions || versions.error) return versions ? versions.error : "";
  return versions.map((v) => {
    const marks = [v.active ? "active" : null, v.pinned ? "pinned" : null].filter(Boolean);
    return marks.length ? `${v.version} (${marks.join(", ")})` : v.version;
  }).join(" · ");
}

/** The plugins view. */
export async function pluginsView(ctx) {
  const [plugins, history] = await Promise.all([get("/v1/plugins"), recentEvents({ event: "plugin" }, 50)]);
  const versions = await Promise.all(plugins.map((p) => versionsOf(p.name)));
  const rows = plugins.map((p, i) => {
    const path = `/v1/plugins/${encodeURIComponent(p.name)}`;
    const nodes = p.nodes ? Object.entries(p.nodes).map(([n, b]) =>
      `${n}: ${b.version}${b.pinned ? " (pinned)" : ""}`).join(", ") : "";
    return [h("strong", null, p.name), p.version, p.contract, p.description,
      h("code", { class: "versions" }, versionsText(versions[i])), nodes,
      h("span", { class: "actions" },
        button(`rollback-${p.name}`, "Roll back", () => ctx.act(`roll back ${p.name}`, () => post(`${path}/rollback`))),
        button(`pin-${p.name}`, "Pin", () => ctx.act(`pin ${p.name}`, () => post(`${path}/pin`, {}))),
        button(`unpin-${p.name}`, "Unpin", () => ctx.act(`unpin ${p.name}`, () => post(`${path}/unpin`))))];
  });
  return h("section", { "aria-labelledby": "plugins-title" },
    h("h2", { id: "plugins-title" }, "Plugins"),
    table(null, ["Type", "Version", "Contract", "Description", "Versions kept", "Nodes", "Actions"], rows,
      { id: "plugins" }),
    h("h3", null, "Loads, swaps and roll-backs"),
    history.length ? eventsTable(history, "plugin-events") : h("p", null, "No plugin events yet."));
}

/** The components view. */
export async function componentsView() {
  const components = await get("/v1/components");
  const rows = components.map((c) => [
    h("code", null, c.component), stateBadge(c.effective), stateBadge(c.governing),
    c.requesters.length ? c.requesters.map((r) => typeof r === "string" ? r : JSON.stringify(r)).join(", ") : "none",
  ]);
  return h("section", { "aria-labelledby": "components-title" },
    h("h2", { id: "components-title" }, "Components"),
    h("p", { class: "hint" }, "A component is inactive while any requester holds it so; the CLI sets them (warden component)."),
    table(null, ["Component", "Effective", "Governing", "Requesters"], rows, { id: "components" }));
}
