// A modal dialog asking the operator to confirm: the rest of the page is
// inert while it is open (showModal), Tab stays inside it, Escape closes it
// as a "no", and focus goes back where it was.

import { h } from "./dom.js";

/**
 * Ask to confirm: `body` is a list of nodes or strings shown above the
 * buttons. Resolves true for the confirm button, false otherwise.
 * `opened`, if given, is called with the confirm button once the dialog
 * is open (to disable it while the body is not ready).
 */
export function confirmDialog(title, body, confirmLabel, opened) {
  const before = document.activeElement;
  return new Promise((resolve) => {
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const ok = h("button", { type: "button", class: "primary", id: "dialog-confirm" }, confirmLabel);
    const dialog = h("dialog", { "aria-labelledby": "dialog-title", id: "dialog" },
      h("h2", { id: "dialog-title" }, title),
      h("div", { class: "dialog-body" }, body),
      h("div", { class: "buttons" }, cancel, ok));
    let answered = false;
    function close(answer) {
      if (answered) return;
      answered = true;
      dialog.close();
      dialog.remove();
      if (before && typeof before.focus === "function") before.focus();
      resolve(answer);
    }
    cancel.addEventListener("click", () => close(false));
    ok.addEventListener("click", () => close(true));
    // Escape: the browser fires "cancel"; closing it here answers "no".
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); close(false); });
    dialog.addEventListener("close", () => close(false));
    dialog.addEventListener("keydown", (e) => {
      if (e.key !== "Tab") return;
      const focusable = [...dialog.querySelectorAll("button, a[href], input, select, textarea")]
        .filter((el) => !el.disabled);
      if (focusable.length === 0) return;
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      if (e.shiftKey && document.activeElement === first) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && document.activeElement === last) {
        e.preventDefault();
        first.focus();
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
    if (opened) opened(ok);
  });
}
