// Building the page: elements made from data, never HTML parsed from strings (the policy's
// Trusted Types refuse that), and the small formatting rules every view shares.

/** An element: `attrs` are properties (className, id, hidden, ...) or, with a dash or
 * `for`, attributes; children are nodes or text. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.includes("-") || name === "for" || name === "role") node.setAttribute(name, value);
    else node[name] = value;
  }
  node.append(...children.flat().filter((c) => c !== undefined && c !== null));
  return node;
}

/** Replace a node's children. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null));
  return node;
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

/** Show an API error as the API gave it: its DashScope code, message and request id. */
export function showError(box, error) {
  if (!error) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const code = error.code || "Error";
  fill(
    box,
    el("strong", { className: "code" }, code),
    " ",
    el("span", { className: "message" }, error.message || String(error)),
    error.requestId ? el("span", { className: "request-id" }, `request ${error.requestId}`) : null,
  );
  box.hidden = false;
}

/** The time of day of an API time ("2024-01-01 12:00:00.000", UTC), with the date when
 * it is not today's. */
export function shortTime(text) {
  if (!text) return "";
  const [day, time] = text.split(" ");
  const today = new Date().toISOString().slice(0, 10);
  const clock = (time || "").slice(0, 8);
  return day === today ? clock : `${day} ${clock}`;
}

/** Milliseconds between two API times, as "1.2 s", or "" when one is missing. */
export function duration(from, to) {
  if (!from || !to) return "";
  const ms = Date.parse(to.replace(" ", "T") + "Z") - Date.parse(from.replace(" ", "T") + "Z");
  if (!Number.isFinite(ms)) return "";
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

export function statusBadge(status) {
  return el("span", { className: `badge status-${String(status).toLowerCase()}` }, status);
}

/** A number for a limit, where 0 means none. */
export function limitText(value) {
  return value ? String(value) : "none";
}

/** Put `text` on the clipboard where the browser allows it (a secure context). */
export async function copyText(text) {
  if (!navigator.clipboard || !window.isSecureContext) return false;
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
