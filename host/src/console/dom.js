// Small helpers to build the DOM from data without innerHTML: every text the
// agent sends is set as text, never parsed as markup.

/**
 * An element: h("button", { class: "x", onclick: f }, "text", child...).
 * Attributes named on* become listeners; null/false attributes are left out.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, attributes set the same way as h(). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A state written as text, with a class for its colour (never colour alone). */
export function stateBadge(state) {
  const text = String(state ?? "unknown");
  return h("span", { class: `state state-${text.toLowerCase()}`, "data-state": text }, text);
}

/** A time in milliseconds since the epoch, as the browser's local time. */
export function when(ms) {
  if (typeof ms !== "number") return "";
  const date = new Date(ms);
  return date.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** How long ago `ms` was, in words ("4 s ago", "3 min ago"). */
export function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A link to a view of the console. */
export function link(hash, text) {
  return h("a", { href: hash }, text);
}

/** An HTML table from a header row and rows of cells. */
export function table(caption, head, rows, attrs) {
  return h("table", attrs,
    caption ? h("caption", null, caption) : null,
    h("thead", null, h("tr", null, head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, rows.map((r) => h("tr", null, r.map((c) => h("td", null, c))))));
}
