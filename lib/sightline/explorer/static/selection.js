// The selectors of one map: model, variant, method, layer, head (or head mean), percentile.
import { api, dropdown, el } from "./util.js";

export function findModel(profile, model) {
  return profile.models.find((m) => m.model === model) || profile.models[0];
}

function findMethod(profile, sel) {
  const variant = findModel(profile, sel.model).variants.find((v) => v.variant === sel.variant);
  return variant && variant.methods.find((m) => m.method === sel.method);
}

// A full selection from URL query values, with the model's defaults for what is missing.
export function selectionFrom(profile, query) {
  const base = { ...findModel(profile, query.get("model")).default };
  for (const key of ["model", "variant", "method"]) if (query.get(key)) base[key] = query.get(key);
  const method = findMethod(profile, base);
  if (method && !query.get("layer")) base.layer = method.best_layer;
  for (const key of ["layer", "head", "percentile"]) {
    if (query.get(key) !== null && query.get(key) !== "") base[key] = Number(query.get(key));
  }
  return base;
}

// A selection the page can show: each field the profile does not have (a variant the
// model lacks, a layer or head not there, a percentile outside [0, 100)) replaced by the
// model's default. Returns {sel, replaced: [[field, asked, shown], ...]}.
export function validSelection(profile, asked) {
  const model = findModel(profile, asked.model);
  const sel = { ...asked, model: model.model };
  const replaced = [];
  const swap = (field, value) => { replaced.push([field, asked[field], value]); sel[field] = value; };
  if (asked.model && asked.model !== model.model) swap("model", model.model);
  let variant = model.variants.find((v) => v.variant === sel.variant);
  if (!variant) { variant = model.variants.find((v) => v.variant === model.default.variant); swap("variant", variant.variant); }
  let method = variant.methods.find((m) => m.method === sel.method);
  if (!method) {
    method = variant.methods.find((m) => m.method === model.default.method) || variant.methods[0];
    swap("method", method.method);
  }
  if (!method.layers.includes(Number(sel.layer))) swap("layer", method.best_layer);
  const heads = method.heads[sel.layer] || 0;
  if (!(Number.isInteger(sel.head) && sel.head >= -1 && sel.head < heads)) swap("head", -1);
  if (!(Number.isFinite(sel.percentile) && sel.percentile >= 0 && sel.percentile < 100)) {
    swap("percentile", profile.headline_percentile);
  }
  return { sel, replaced };
}

// The selection of a URL made valid, and the notice saying what was replaced: the API's
// own message for what was asked, then what is shown instead ("" when nothing was).
export async function checkedSelection(profile, asked, imageId) {
  const { sel, replaced } = validSelection(profile, asked);
  if (!replaced.length) return { sel, notice: "" };
  let message = `${replaced.map(([field, value]) => `${field} ${value}`).join(", ")} is not in this profile`;
  try {
    await api(`/metrics/${encodeURIComponent(imageId)}?${new URLSearchParams(selectionQuery(asked))}`);
  } catch (error) {
    message = error.message;
  }
  const shown = replaced.map(([field, , value]) => `${field} ${value}`).join(", ");
  return { sel, notice: `${message}. Showing ${shown} instead.` };
}

export function selectionQuery(sel) {
  const { model, variant, method, layer, head, percentile } = sel;
  return { model, variant, method, layer, head, percentile };
}

// onChange(selection, {live}) — live is true while the percentile slider moves.
export function selectors(profile, initial, onChange, prefix = "sel") {
  let sel = { ...initial };
  const node = el("div", { class: "selectors" });

  const select = (field, options, value) => [el("label", { for: `${prefix}-${field}` }, field),
    dropdown(`${prefix}-${field}`, options, value, (chosen) => update(field, chosen), { "data-field": field })];

  function update(field, value) {
    const model = findModel(profile, field === "model" ? value : sel.model);
    if (field === "model") {
      sel = { ...model.default, percentile: sel.percentile };
    } else if (field === "variant" || field === "method") {
      sel = { ...sel, [field]: value };
      const variant = model.variants.find((v) => v.variant === sel.variant);
      if (!variant.methods.some((m) => m.method === sel.method)) sel.method = variant.methods[0].method;
      sel.layer = findMethod(profile, sel).best_layer;
      sel.head = -1;
    } else if (field === "layer") {
      sel = { ...sel, layer: Number(value) };
      const heads = findMethod(profile, sel).heads[sel.layer] || 0;
      if (sel.head >= heads) sel.head = -1;
    } else {
      sel = { ...sel, [field]: Number(value) };
    }
    render();
    onChange({ ...sel }, { live: false });
  }

  function render() {
    const model = findModel(profile, sel.model);
    const variant = model.variants.find((v) => v.variant === sel.variant) || model.variants[0];
    const method = variant.methods.find((m) => m.method === sel.method) || variant.methods[0];
    const heads = method.heads[sel.layer] || 0;
    const slider = el("input", { id: `${prefix}-percentile`, type: "range", min: 0, max: 99, step: 1,
                                 value: sel.percentile });
    const shown = el("span", { id: `${prefix}-percentile-value` }, String(sel.percentile));
    slider.addEventListener("input", () => {
      sel = { ...sel, percentile: Number(slider.value) };
      shown.textContent = slider.value;
      onChange({ ...sel }, { live: true });
    });
    slider.addEventListener("change", () => onChange({ ...sel }, { live: false }));
    node.replaceChildren(
      ...select("model", profile.models.map((m) => [m.model, m.model]), sel.model),
      ...select("variant", model.variants.map((v) => [v.variant, v.variant]), sel.variant),
      ...select("method", variant.methods.map((m) => [m.method, m.label]), sel.method),
      ...select("layer", method.layers.map((l) => [l, l === method.best_layer ? `${l} (best)` : l]), sel.layer),
      // a map without heads (a CNN's, a baseline's, rollout) gets no head selector
      ...(heads ? select("head", [[-1, "mean of heads"], ...Array.from({ length: heads }, (_, h) => [h, h])], sel.head) : []),
      el("label", { for: `${prefix}-percentile` }, "percentile"), el("span", {}, slider, " ", shown),
    );
  }

  render();
  return { node, get: () => ({ ...sel }) };
}
