// Moving a group: the operator picks the target among the group's allowed
// nodes (or leaves the choice to the policy), reads what the policy would
// do for that target (what-if, asked again at every change), and confirms.
// Nothing moves before the confirmation, nor while the answer shown is not
// the chosen target's.

import { ApiError, post } from "./api.js";
import { h } from "./dom.js";
import { confirmDialog } from "./dialog.js";

/**
 * The nodes `group` may run on, in the policy's order: its preferred
 * owners, then every other node of the cluster (Warden's configuration
 * names no possible owners, so any node of the cluster may take a group).
 */
export function allowedNodes(ctx, group) {
  const nodes = ctx.status.nodes || [];
  const configured = (ctx.config.groups || []).find((g) => g.name === group);
  const preferred = (configured && configured.preferred_owners) || [];
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const order = [...preferred.filter((n) => byName.has(n)), ...nodes.map((n) => n.name)];
  return [...new Set(order)].map((name) => byName.get(name));
}

/** The policy's answer for moving `group` to `to` (null: the best other node). */
async function whatIf(group, to) {
  const answer = await post("/v1/what-if", { "move-requested": { group, to } });
  return answer.actions;
}

/** Ask which node, show the policy's answer for it, and move once confirmed. */
export async function moveGroup(ctx, group) {
  const current = ctx.status.groups.find((g) => g.name === group);
  const owner = current ? current.owner : null;
  const targets = allowedNodes(ctx, group).filter((n) => n.name !== owner);
  const select = h("select", { id: "move-target", "data-key": `move-target-${group}` },
    h("option", { value: "" }, "the best other node (the policy chooses)"),
    targets.map((n) => h("option", { value: n.name }, `${n.name} (${n.state})`)));
  const answer = h("div", { id: "what-if-answer", "aria-live": "polite" });
  let confirm = null;
  let asked = 0;
  async function ask() {
    const to = select.value || null;
    const mine = ++asked;
    if (confirm) confirm.disabled = true;
    answer.replaceChildren(h("p", { class: "hint" }, "asking the policy…"));
    let actions;
    try {
      actions = await whatIf(group, to);
    } catch (err) {
      if (mine !== asked) return;
      const why = err instanceof ApiError ? err.describe() : String(err);
      answer.replaceChildren(h("p", { class: "error", id: "what-if-error" }, `what-if: ${why}`));
      return;
    }
    if (mine !== asked) return;
    const where = to ? `to ${to}` : "to the best other node";
    const attrs = { id: "what-if", "data-target": to ?? "" };
    answer.replaceChildren(
      h("p", null, `What the policy would do if ${group} were moved ${where}:`),
      actions.length ? h("ul", attrs, actions.map((a) => h("li", null, a)))
        : h("p", attrs, "nothing would happen"));
    if (confirm) confirm.disabled = false;
  }
  select.addEventListener("change", ask);
  const body = [
    h("p", null, `Owner now: ${owner ?? "none"}.`),
    h("p", null, h("label", { for: "move-target" }, "Move to "), select),
    answer,
  ];
  const confirmed = await confirmDialog(`Move group ${group}?`, body, "Move", (ok) => {
    confirm = ok;
    ask();
  });
  if (!confirmed) return;
  const to = select.value;
  await ctx.act(`move ${group}${to ? ` to ${to}` : ""}`,
    () => post(`/v1/groups/${encodeURIComponent(group)}/move`, to ? { to } : {}));
}
