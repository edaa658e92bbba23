// The deploy form's fields and the pure work on them: field paths, the merge of the form
// over the advanced part, the split of a function mapping into the two, and which field an
// API issue belongs to. No DOM here.

// kind: how the text of the input becomes a value (and back); runs: shown only for that choice
export const FIELDS = [
  { path: "name", label: "name", kind: "text", group: "function", placeholder: "orders" },
  { path: "topic", label: "topic", kind: "text", group: "function", placeholder: "orders" },
  { path: "handler", label: "handler (module:function)", kind: "text", group: "runs", runs: "handler", placeholder: "shop.orders:handle" },
  { path: "image", label: "image", kind: "text", group: "runs", runs: "image", placeholder: "registry/orders:1.0" },
  { path: "command", label: "command (words separated by spaces)", kind: "words", group: "runs", runs: "image", placeholder: "node server.js" },
  { path: "routes[0].path", label: "route path", kind: "text", group: "route", placeholder: "/orders/" },
  { path: "routes[0].methods", label: "methods (comma separated; empty: all)", kind: "list", group: "route", placeholder: "GET, POST" },
  { path: "routes[0].async", label: "async", kind: "choice", group: "route", choices: [["", "(default: wait for the reply)"], ["false", "false: wait for the reply"], ["true", "true: 202 with a call id"]] },
  { path: "routes[0].auth", label: "auth", kind: "choice", group: "route", choices: [["", "(default: none)"], ["none", "none"], ["api_key", "api_key"], ["jwt", "jwt"], ["any", "any"]] },
  { path: "scaling.min", label: "min replicas", kind: "number", group: "scaling", placeholder: "0" },
  { path: "scaling.max", label: "max replicas", kind: "number", group: "scaling", placeholder: "10" },
  { path: "scaling.target", label: "target (waiting messages per replica)", kind: "number", group: "scaling", placeholder: "5" },
  { path: "concurrency", label: "concurrency", kind: "number", group: "limits", placeholder: "8" },
  { path: "timeout_s", label: "timeout_s", kind: "number", group: "limits", placeholder: "30" },
  { path: "retry.max_attempts", label: "retry max_attempts", kind: "number", group: "limits", placeholder: "5" },
];

/** "routes[0].path" -> ["routes", 0, "path"] */
export function keysOf(path) {
  return path.split(/\.|\[(\d+)\]/).filter((k) => k !== undefined && k !== "").map((k) => (/^\d+$/.test(k) ? Number(k) : k));
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

export function getIn(obj, keys) {
  let at = obj;
  for (const k of keys) {
    if (at === null || typeof at !== "object" || !(k in at)) return undefined;
    at = at[k];
  }
  return at;
}

export function setIn(obj, keys, value) {
  let at = obj;
  keys.slice(0, -1).forEach((k, i) => {
    const nextIsIndex = typeof keys[i + 1] === "number";
    if (typeof k === "number" && typeof at[k] === "string") at[k] = { path: at[k] }; // a route given as a bare path
    if (at[k] === null || typeof at[k] !== "object") at[k] = nextIsIndex ? [] : {};
    at = at[k];
  });
  at[keys[keys.length - 1]] = value;
}

function deleteIn(obj, keys) {
  const parent = getIn(obj, keys.slice(0, -1));
  if (parent !== null && typeof parent === "object") delete parent[keys[keys.length - 1]];
}

/** The text of an input -> the value posted; undefined: the form does not set the field. */
export function parseValue(field, text) {
  const raw = text.trim();
  if (raw === "") return undefined;
  if (field.kind === "number") return /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw; // the API says what is wrong
  if (field.kind === "words") return raw.split(/\s+/);
  if (field.kind === "list") return raw.split(/[\s,]+/).filter(Boolean);
  if (field.kind === "choice" && field.path.endsWith(".async")) return raw === "true";
  return raw;
}

/** A value of the mapping -> the text of its input; undefined: the form cannot show it. */
export function showValue(field, value) {
  if (field.kind === "number") return typeof value === "number" ? String(value) : undefined;
  if (field.kind === "words") return Array.isArray(value) && value.every((w) => typeof w === "string" && w && !/\s/.test(w)) ? value.join(" ") : undefined;
  if (field.kind === "list") return Array.isArray(value) && value.every((w) => typeof w === "string") ? value.join(", ") : undefined;
  if (field.kind === "choice") {
    const text = typeof value === "boolean" && field.path.endsWith(".async") ? String(value) : value;
    return field.choices.some(([v]) => v !== "" && v === text) ? text : undefined;
  }
  return typeof value === "string" ? value : undefined;
}

/** The advanced part with the form's values over it (the form wins). */
export function merge(advanced, values) {
  const out = structuredClone(isObject(advanced) ? advanced : {});
  for (const [path, value] of Object.entries(values)) setIn(out, keysOf(path), value);
  return out;
}

function prune(value) {
  if (Array.isArray(value)) {
    while (value.length && isObject(value[value.length - 1]) && !Object.keys(value[value.length - 1]).length) value.pop();
    return value;
  }
  if (!isObject(value)) return value;
  for (const [k, v] of Object.entries(value)) {
    const left = prune(v);
    if ((isObject(left) && !Object.keys(left).length) || (Array.isArray(left) && !left.length && Array.isArray(v))) delete value[k];
  }
  return value;
}

/** A function mapping -> { values: path -> input text, rest: what only the advanced part holds }. */
export function split(source) {
  const rest = structuredClone(isObject(source) ? source : {});
  if (typeof rest.routes === "string") rest.routes = [rest.routes];
  if (Array.isArray(rest.routes) && typeof rest.routes[0] === "string") rest.routes[0] = { path: rest.routes[0] };
  const values = {};
  for (const field of FIELDS) {
    const keys = keysOf(field.path);
    const shown = showValue(field, getIn(rest, keys));
    if (shown === undefined) continue;
    values[field.path] = shown;
    deleteIn(rest, keys);
  }
  return { values, rest: prune(rest) };
}

/** The field an issue's path belongs to (the longest field path it starts with), or null. */
export function fieldFor(issuePath, paths) {
  const path = (issuePath || "").replace(/^functions\[\d+\]\.?/, "");
  let best = null;
  for (const p of paths) {
    const under = path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`);
    if (under && (best === null || p.length > best.length)) best = p;
  }
  return best;
}

/** A function mapping from the resolved summary of GET /api/v1/functions/{name} (its
 * `spec`), for a function whose own entry is not known (applied from another file). */
export function fromSpec(name, spec) {
  const out = { name, topic: spec.topic, channel: spec.channel, handler: spec.handler, image: spec.image, command: spec.command };
  Object.assign(out, { concurrency: spec.concurrency, timeout_s: spec.timeout_s, retry: { max_attempts: spec.max_attempts } });
  const { min, max, target } = spec.scaling || {};
  out.scaling = { min, max, target };
  out.routes = (spec.routes || []).map((r) => ({ path: r.prefix, methods: r.methods, async: r.async }));
  return JSON.parse(JSON.stringify(out, (k, v) => (v === null ? undefined : v)));
}
