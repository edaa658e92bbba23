// Helpers shared by the console's modules: DOM building, number format, the API call.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function fmt(value, digits = 2) {
  if (value === null || value === undefined) return "–";
  return typeof value === "number" ? String(Number(value.toFixed(digits))) : String(value);
}

export async function api(method, path, body, contentType = "application/json") {
  const headers = {};
  const key = localStorage.getItem("kf-api-key");
  if (key) headers["X-Api-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = contentType;
  const init = { method, headers };
  if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({ error: "bad_reply", message: response.statusText }));
  if (response.status === 401) document.getElementById("login").hidden = false;
  if (!response.ok) throw Object.assign(new Error(data.message || response.statusText), { data, status: response.status });
  return data;
}
