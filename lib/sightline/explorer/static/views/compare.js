// Compare: two maps of one image side by side with their union metrics, and A − B.
import { normalise, paintDiverging, paintHeat, paintOutline, stage, topKMask, upsample } from "../draw.js";
import { checkedSelection, selectionFrom, selectors } from "../selection.js";
import { api, el, imageOrder, setHash } from "../util.js";
import { metricsQuery, metricsTable } from "./detail.js";

// A map as displayed (scaled to [0, 1]) placed in the image: R x R samples over the whole
// image, 0 outside the model's frame, so maps of models with different frames compare.
function inImage(up, R, frame) {
  const scaled = normalise(up);
  const out = new Float32Array(R * R);
  for (let y = 0; y < R; y++) {
    const fy = ((y + 0.5) / R - frame[1]) / (frame[3] - frame[1]);
    for (let x = 0; x < R; x++) {
      const fx = ((x + 0.5) / R - frame[0]) / (frame[2] - frame[0]);
      if (fx >= 0 && fx < 1 && fy >= 0 && fy < 1) {
        out[y * R + x] = scaled[Math.floor(fy * R) * R + Math.floor(fx * R)];
      }
    }
  }
  return out;
}

export async function compareView(main, { id, query, profile }) {
  const imageId = id || imageOrder()[0];
  const path = encodeURIComponent(imageId);
  const boxes = await api(`/images/${path}/boxes`);
  const R = profile.resolution;
  const models = profile.models.map((m) => m.model);
  const checked = {
    a: await checkedSelection(profile, selectionFrom(profile, new URLSearchParams(query.get("a") || "")), imageId),
    b: await checkedSelection(profile, selectionFrom(profile, new URLSearchParams(query.get("b") || `model=${models[1] || models[0]}`)), imageId),
  };
  const choices = { a: checked.a.sel, b: checked.b.sel };
  const placed = {};
  const diff = stage(`/images/${path}/file`, boxes);
  diff.place([0, 0, 1, 1]);
  const diffNote = el("p", { class: "hint" });

  const remember = () => setHash("compare", imageId, { a: metricsQuery(choices.a), b: metricsQuery(choices.b) });
  const sides = Object.keys(choices).map((side) => {
    const view = stage(`/images/${path}/file`, boxes);
    const metrics = metricsTable(profile.metrics, `${side}-metric`);
    const refresh = async () => {
      const sel = choices[side];
      const [map, union] = await Promise.all([api(`/maps/${path}?${metricsQuery(sel)}`),
                                              api(`/metrics/${path}?${metricsQuery(sel)}`)]);
      const up = upsample(map.grid, R);
      view.place(map.frame);
      paintHeat(view.heat, up, R, "viridis");
      view.heat.style.opacity = 0.65;
      paintOutline(view.outline, topKMask(up, sel.percentile).mask, R);
      metrics.show(union);
      placed[side] = inImage(up, R, map.frame);
      drawDifference();
    };
    const widget = selectors(profile, choices[side], (next, { live }) => {
      choices[side] = next;
      remember();
      if (!live) refresh();
    }, side);
    const panel = el("div", {}, el("h3", {}, side.toUpperCase()), view.node,
      el("div", { class: "panel" }, el("p", { class: "error", id: `${side}-selection-notice`, hidden: !checked[side].notice },
        checked[side].notice), widget.node),
      el("div", { class: "panel" }, el("h3", {}, "union"), metrics.table));
    return { panel, refresh };
  });

  function drawDifference() {
    if (!placed.a || !placed.b) return;
    paintDiverging(diff.heat, placed.a.map((v, i) => v - placed.b[i]), R);
    diff.heat.style.opacity = 0.75;
    diffNote.textContent = "Red: A is higher; blue: B is higher (each map scaled to [0, 1] as shown, "
      + "in image coordinates; outside a model's frame its map is 0).";
  }

  main.append(el("h3", {}, `Compare on ${imageId}`),
    el("div", { class: "compare" }, sides[0].panel, sides[1].panel,
      el("div", {}, el("h3", {}, "A − B"), diff.node, diffNote)));
  await Promise.all(sides.map((s) => s.refresh()));
  main.dataset.ready = "compare";
}
