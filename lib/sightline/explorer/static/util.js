// Helpers every view shares: the API client, the address, small DOM builders.

window.sightlineRequests = 0;  // how many API requests the page made (the browser test reads it)

export async function api(path) {
  window.sightlineRequests += 1;
  const response = await fetch(path);
  const body = await response.json();
  if (!response.ok) {
    // the API's message: a sentence (404, and the 422s of sightline's handler), else the
    // messages of a validator's records
    const detail = Array.isArray(body.detail)
      ? body.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ") : body.detail;
    throw new Error(detail || `${response.status} ${path}`);
  }
  return body;
}

// "#/image/ID?model=x&layer=3" -> {view: "image", id: "ID", query: URLSearchParams}
export function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [view, ...rest] = path.split("/");
  return { view: view || "gallery", id: rest.length ? decodeURIComponent(rest.join("/")) : null,
           query: new URLSearchParams(query) };
}

export function href(view, id, query) {
  const qs = query ? new URLSearchParams(query).toString() : "";
  return `#/${view}${id ? "/" + encodeURIComponent(id) : ""}${qs ? "?" + qs : ""}`;
}

// Replace the address without re-rendering (a view that already shows the new state).
export function setHash(view, id, query) {
  history.replaceState(null, "", href(view, id, query));
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

// An SVG element with attributes (and a text).
export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A <select> of [value, text] options with `value` selected; onChange gets the chosen value.
export function dropdown(id, options, value, onChange, attrs = {}) {
  const input = el("select", { id, ...attrs },
    options.map(([v, text]) => el("option", { value: v, selected: String(v) === String(value) }, text)));
  input.addEventListener("change", () => onChange(input.value));
  return input;
}

export function fmt(value, digits = 4) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

let profile = null;
export async function getProfile() {
  profile ??= await api("/profile");
  return profile;
}

// The image order the arrow keys walk: the gallery's last order, else by id.
export function imageOrder() {
  const saved = sessionStorage.getItem("sightline-order");
  return saved ? JSON.parse(saved) : profile.images;
}
