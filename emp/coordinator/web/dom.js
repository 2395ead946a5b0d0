// DOM helpers. Everything the page shows is built with createElement and text nodes: job payloads,
// messages and ids are untrusted, so no string is ever parsed as markup (tests/web/test_static.py
// checks that no script uses an HTML-parsing API).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "data") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child)); // a string becomes a text node
  }
}

export function $(id) {
  return document.getElementById(id);
}

export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// An output URL as a link only when it is http(s): anything else (file://, javascript:, data:) is
// shown as text, so a job's result can never make the page run a script.
export function safeLink(url, text) {
  try {
    const parsed = new URL(String(url), location.href);
    if (parsed.protocol === "http:" || parsed.protocol === "https:") {
      return h("a", { href: parsed.href, target: "_blank", rel: "noopener noreferrer" }, text ?? parsed.href);
    }
  } catch {
    // not a URL: shown as text below
  }
  return h("span", { class: "mono" }, String(url));
}

export function progressBar(value, label) {
  const v = Math.max(0, Math.min(100, Number(value) || 0));
  return h("span", { class: "bar" }, h("progress", { max: 100, value: v.toFixed(1) }), h("span", { class: "pct" }, label ?? `${v.toFixed(0)}%`));
}

export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(s < 10 ? 1 : 0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

export function clock(ms) {
  if (!ms) return "";
  return new Date(Number(ms)).toLocaleTimeString();
}
