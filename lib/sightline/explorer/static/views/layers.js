// Layers & heads: the metric per layer for every model (click a point to open that map),
// and one model's head x layer heatmap (click a cell to see that head's map on an image).
import { paintHeat, paintOutline, stage, topKMask, upsample } from "../draw.js";
import { findModel } from "../selection.js";
import { api, dropdown, el, fmt, href, setHash, svg } from "../util.js";

// Colour per model (Okabe-Ito, then Tableau's), marker and line style per method: a series
// reads as model x method without 21 lines sharing 7 colours.
const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#000000",
                 "#8c564b", "#bcbd22", "#7f7f7f", "#17becf", "#f0e442"];
const MARKERS = ["circle", "square", "triangle", "diamond", "cross", "triangle-down"];
const DASHES = ["", "6 3", "2 2", "8 3 2 3", "1 3", "10 2"];
const NEAR = 7;  // px (chart units): points this close to a click are all offered

function marker(shape, cx, cy, size, attrs) {
  const s = size;
  const paths = {
    square: `M${cx - s},${cy - s}h${2 * s}v${2 * s}h${-2 * s}z`,
    triangle: `M${cx},${cy - 1.2 * s}L${cx + 1.1 * s},${cy + s}H${cx - 1.1 * s}z`,
    "triangle-down": `M${cx},${cy + 1.2 * s}L${cx + 1.1 * s},${cy - s}H${cx - 1.1 * s}z`,
    diamond: `M${cx},${cy - 1.3 * s}L${cx + 1.3 * s},${cy}L${cx},${cy + 1.3 * s}L${cx - 1.3 * s},${cy}z`,
    cross: `M${cx - s},${cy - s}L${cx + s},${cy + s}M${cx - s},${cy + s}L${cx + s},${cy - s}`,
  };
  if (shape === "circle") return svg("circle", { cx, cy, r: s, ...attrs });
  const stroke = shape === "cross" ? { stroke: attrs.fill, "stroke-width": 2, fill: "none" } : {};
  return svg("path", { d: paths[shape], ...attrs, ...stroke });
}

function legendSwatch(colour, shape, dash) {
  const icon = svg("svg", { width: 34, height: 12, viewBox: "0 0 34 12", class: "swatch" });
  icon.append(svg("line", { x1: 1, x2: 33, y1: 6, y2: 6, stroke: colour, "stroke-width": 1.5,
                            "stroke-dasharray": dash }),
              marker(shape, 17, 6, 3.5, { fill: colour }));
  return icon;
}

// rows: {model, method, layer, value}. A click offers every point within NEAR of it (points
// of different series often coincide): one opens at once, several are listed to pick from.
function lineChart(rows, { onPoint, label, models, methods }) {
  const W = 640, H = 320, pad = { l: 50, r: 10, t: 10, b: 35 };
  const layers = rows.map((r) => r.layer), values = rows.map((r) => r.value ?? 0);
  const xmax = Math.max(1, ...layers), ymin = Math.min(0, ...values);
  const ymax = Math.max(ymin + 1e-9, ...values) * 1.05;
  const x = (l) => pad.l + (l / xmax) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - ((v - ymin) / (ymax - ymin)) * (H - pad.t - pad.b);
  const chart = svg("svg", { class: "chart", id: "layer-chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H });
  chart.append(svg("line", { x1: pad.l, x2: W - pad.r, y1: H - pad.b, y2: H - pad.b, stroke: "#999" }),
               svg("line", { x1: pad.l, x2: pad.l, y1: pad.t, y2: H - pad.b, stroke: "#999" }),
               svg("text", { x: W / 2, y: H - 4, "text-anchor": "middle" }, "layer"),
               svg("text", { x: 12, y: H / 2, transform: `rotate(-90 12 ${H / 2})`, "text-anchor": "middle" }, label));
  for (let t = 0; t <= 4; t++) {
    const v = ymin + ((ymax - ymin) * t) / 4;
    chart.append(svg("text", { x: pad.l - 4, y: y(v) + 4, "text-anchor": "end" }, fmt(v, 2)));
  }
  for (const l of [...new Set(layers)]) chart.append(svg("text", { x: x(l), y: H - pad.b + 14, "text-anchor": "middle" }, l));
  const legend = el("div", { class: "legend", id: "layer-legend" });
  const points = [];
  for (const model of models) {
    for (const method of methods) {
      const line = rows.filter((r) => r.model === model && r.method === method && r.value !== null);
      if (!line.length) continue;
      const colour = PALETTE[models.indexOf(model) % PALETTE.length];
      const shape = MARKERS[methods.indexOf(method) % MARKERS.length];
      const dash = DASHES[methods.indexOf(method) % DASHES.length];
      chart.append(svg("polyline", { points: line.map((r) => `${x(r.layer)},${y(r.value)}`).join(" "),
                                     fill: "none", stroke: colour, "stroke-width": 1.5, "stroke-dasharray": dash }));
      for (const r of line) {
        const dot = marker(shape, x(r.layer), y(r.value), 3.5, {
          fill: colour, class: "point", "data-model": model, "data-method": method, "data-layer": r.layer });
        dot.append(svg("title", {}, `${model} · ${method} · layer ${r.layer}: ${fmt(r.value)}`));
        chart.append(dot);
        points.push({ ...r, px: x(r.layer), py: y(r.value) });
      }
      legend.append(el("span", { "data-series": `${model}|${method}` }, legendSwatch(colour, shape, dash),
                       ` ${model} · ${method}`));
    }
  }
  const chooser = el("div", { id: "point-chooser", class: "panel", hidden: true });
  chart.addEventListener("click", (event) => {
    const box = chart.getBoundingClientRect();
    const cx = ((event.clientX - box.left) / box.width) * W, cy = ((event.clientY - box.top) / box.height) * H;
    const near = points.map((p) => ({ ...p, d: Math.hypot(p.px - cx, p.py - cy) }))
      .filter((p) => p.d <= NEAR).sort((a, b) => a.d - b.d);
    if (near.length === 1) onPoint(near[0]);
    if (near.length < 2) { chooser.hidden = true; return; }
    chooser.replaceChildren(el("p", { class: "hint" }, `${near.length} maps at this point — pick one:`),
      ...near.map((p) => el("button", { type: "button", "data-model": p.model, "data-method": p.method,
        "data-layer": p.layer, onclick: () => onPoint(p) }, `${p.model} · ${p.method} · layer ${p.layer}: ${fmt(p.value)}`)));
    chooser.hidden = false;
  });
  return el("div", {}, chart, legend, chooser);
}

function colour(value, min, max) {
  const t = max > min ? (value - min) / (max - min) : 0.5;
  return `hsl(${250 - 200 * t}, 70%, ${30 + 40 * t}%)`;
}

export async function layersView(main, { query, profile }) {
  const state = {
    metric: query.get("metric") || "iou", percentile: Number(query.get("percentile") || profile.headline_percentile),
    variant: query.get("variant") || "frozen", image: query.get("image") || "",
    model: query.get("model") || profile.models.find((m) => m.variants.some((v) => v.methods.some((x) => Object.keys(x.heads).length)))?.model || profile.models[0].model,
    method: query.get("method") || "", series: query.get("series") || "",
    correct: query.get("correct") || "all",
  };
  const chartBox = el("div", { class: "panel" });
  const headsBox = el("div", { class: "panel" });
  const variants = [...new Set(profile.models.flatMap((m) => m.variants.map((v) => v.variant)))];

  const choice = (name, options) => el("label", {}, name,
    dropdown(`layers-${name}`, options, state[name], (value) => { state[name] = value; render(); }));
  const openImage = (sel) => href("image", state.image || profile.images[0], sel);

  async function render() {
    setHash("layers", null, state);
    const thresholded = profile.metrics.find((m) => m.name === state.metric)?.thresholded ?? true;
    const p = thresholded ? `&percentile=${state.percentile}` : "";
    const scope = state.image ? `&image_id=${encodeURIComponent(state.image)}` : "";
    const curves = (await api(`/layers?metric=${state.metric}&variant=${state.variant}${p}${scope}`
      + `&correct=${state.correct}`)).filter((r) => r.model !== "baseline");
    const models = profile.models.map((m) => m.model).filter((m) => curves.some((r) => r.model === m));
    const methods = [...new Set(curves.map((r) => r.method))].sort();
    const seriesChoice = dropdown("layers-series", [["", "all methods"], ...methods.map((m) => [m, m])],
      state.series, (value) => { state.series = value; render(); });
    const shown = curves.filter((r) => !state.series || r.method === state.series);
    chartBox.replaceChildren(el("h3", {}, `${state.metric}${thresholded ? `@${state.percentile}` : ""} per layer `
      + `(union, head mean, ${state.image || "mean over all images"}`
      + `${state.correct === "all" ? "" : `; images each model's prediction gets ${state.correct}`}`
      + `) — click a point to open that map`),
      el("div", { class: "controls" }, el("label", {}, "methods shown", seriesChoice),
        el("span", { class: "hint" }, "colour: model · marker and line: method")),
      lineChart(shown, { label: state.metric, models, methods,
        onPoint: (r) => { location.hash = openImage({ model: r.model, variant: state.variant, method: r.method, layer: r.layer, percentile: state.percentile }); } }));

    const model = findModel(profile, state.model);
    const variant = model.variants.find((v) => v.variant === state.variant) || model.variants[0];
    const missing = variant.variant !== state.variant
      ? el("p", { class: "error", id: "variant-notice" }, `${model.model} has no '${state.variant}' variant `
        + `(it has ${model.variants.map((v) => v.variant).join(", ")}): its heads below are the `
        + `${variant.variant} maps.`) : null;
    const withHeads = variant.methods.filter((m) => Object.keys(m.heads).length);
    const method = withHeads.find((m) => m.method === state.method) || withHeads[0];
    const preview = el("div", { id: "head-preview" }, el("p", { class: "hint" }, "Click a cell to see that head's map."));
    if (!method) {
      headsBox.replaceChildren(...[missing, el("p", {}, `${model.model} (${variant.variant}) has no per-head maps.`)].filter(Boolean));
      return;
    }
    const grid = await api(`/heads?model=${model.model}&variant=${variant.variant}&method=${method.method}`
      + `&metric=${state.metric}${p}${scope}`);
    const flat = grid.values.flat().filter((v) => v !== null);
    const [min, max] = [Math.min(...flat), Math.max(...flat)];
    const table = el("table", { class: "heatgrid", id: "head-grid" },
      el("tr", {}, el("th", {}, "layer \\ head"), grid.heads.map((h) => el("th", {}, String(h)))),
      grid.layers.map((layer, i) => el("tr", {}, el("th", {}, String(layer)), grid.heads.map((head, j) => {
        const value = grid.values[i][j];
        const cell = el("td", { style: value === null ? "" : `background:${colour(value, min, max)};color:#fff`,
                                title: `layer ${layer} head ${head}: ${fmt(value)}`, "data-layer": layer, "data-head": head },
                        fmt(value, 2));
        cell.addEventListener("click", async () => {
          table.querySelectorAll("td.selected").forEach((c) => c.classList.remove("selected"));
          cell.classList.add("selected");
          const sel = { model: model.model, variant: variant.variant, method: method.method, layer, head, percentile: state.percentile };
          const image = state.image || profile.images[0];
          const boxes = await api(`/images/${encodeURIComponent(image)}/boxes`);
          const map = await api(`/maps/${encodeURIComponent(image)}?${new URLSearchParams(sel)}`);
          const view = stage(`/images/${encodeURIComponent(image)}/file?max_side=512`, boxes);
          const up = upsample(map.grid, profile.resolution);
          view.place(map.frame);
          paintHeat(view.heat, up, profile.resolution, "viridis");
          view.heat.style.opacity = 0.6;
          paintOutline(view.outline, topKMask(up, state.percentile).mask, profile.resolution);
          preview.replaceChildren(el("p", {}, `${model.model} · ${method.method} · layer ${layer} · head ${head} on ${image} `,
            el("a", { href: openImage(sel) }, "open in detail")), view.node);
        });
        return cell;
      }))));
    headsBox.replaceChildren(...[missing].filter(Boolean),
      el("div", { class: "controls" }, choice("model", profile.models.map((m) => [m.model, m.model])),
         choice("method", withHeads.map((m) => [m.method, m.method]))),
      el("h3", {}, `${model.model} · ${method.method}: ${state.metric} per layer × head`),
      el("div", { style: "display:flex;gap:1.5em;align-items:flex-start" }, table, preview));
  }

  main.append(el("div", { class: "controls" },
    choice("metric", profile.metrics.map((m) => [m.name, m.label])),
    choice("percentile", profile.percentiles.map((p) => [p, p])),
    choice("variant", variants.map((v) => [v, v])),
    choice("image", [["", "all images"], ...profile.images.map((i) => [i, i])]),
    choice("correct", [["all", "all predictions"], ["right", "right"], ["wrong", "wrong"]])),
    chartBox, headsBox);
  await render();
}
