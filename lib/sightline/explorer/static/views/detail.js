// Image detail: heatmap over the image, top-k outline, boxes, selectors and metrics.
// Clicking a box fetches that box's metrics; clicking it again (or "union") restores the
// union metrics already held, without a request. Arrow keys move between images.
import { COLORMAPS, paintHeat, paintOutline, stage, topKMask, upsample } from "../draw.js";
import { checkedSelection, selectionFrom, selectionQuery, selectors } from "../selection.js";
import { api, dropdown, el, fmt, href, imageOrder, setHash } from "../util.js";

export function metricsQuery(sel) {
  return new URLSearchParams(selectionQuery(sel)).toString();
}

// The profile's metrics (name, label, help: the metric registry's, from /profile), one row each.
export function metricsTable(metrics, prefix = "metric") {
  const cells = {};
  const body = metrics.map(({ name, label, help }) => {
    cells[name] = el("td", { class: "value", id: `${prefix}-${name}` });
    return el("tr", {}, el("td", { title: help }, label), cells[name]);
  });
  const table = el("table", { class: "data metrics" }, body);
  const show = (values) => {
    for (const key of Object.keys(cells)) {
      cells[key].textContent = fmt(values[key]);
      cells[key].dataset.value = values[key] ?? "";
    }
  };
  return { table, show };
}

export async function detailView(main, { id, query, profile }) {
  const imageId = id || imageOrder()[0];
  const checked = await checkedSelection(profile, selectionFrom(profile, query), imageId);
  let sel = checked.sel;
  const notice = el("p", { class: "error", id: "selection-notice", hidden: !checked.notice },
                    checked.notice);
  const boxes = await api(`/images/${encodeURIComponent(imageId)}/boxes`);
  const state = { grid: null, up: null, union: null, box: null, cmap: query.get("cmap") || "viridis",
                  opacity: Number(query.get("opacity") ?? 0.6) };
  const view = stage(`/images/${encodeURIComponent(imageId)}/file`, boxes, { onBox: pick });
  const title = el("h3", { id: "metrics-target" });
  const metrics = metricsTable(profile.metrics);
  const topk = el("p", { class: "hint", id: "topk-info" });
  const error = el("p", { class: "error", hidden: true });
  // a box is named by its feature and numbered from 1 (the API's bbox_index is 0-based)
  const rows = boxes.map((box) => el("tr", { class: "pick", "data-index": box.bbox_index, onclick: () => pick(box.bbox_index) },
    el("td", {}, String(box.bbox_index + 1)),
    el("td", { title: box.mask ? "a mask region: its bounding box is drawn, its mask is scored" : "" },
      box.mask ? `${box.feature} (mask)` : box.feature),
    el("td", {}, `${(box.area * 100).toFixed(1)}%`)));
  const unionRow = el("tr", { class: "pick", id: "union-row", onclick: () => pick(null) },
    el("td", {}, "–"), el("td", {}, `union of ${boxes.length} boxes`), el("td", {}));

  const remember = () => setHash("image", imageId, { ...selectionQuery(sel), cmap: state.cmap, opacity: state.opacity });
  const widget = selectors(profile, sel, async (next, { live }) => {
    sel = next;
    remember();
    if (live) return drawOutline();
    await load();
  });

  function drawOutline() {
    if (!state.up) return;
    const { mask, k } = topKMask(state.up, sel.percentile);
    paintOutline(view.outline, mask, profile.resolution);
    topk.textContent = `outline: the top ${k} of ${state.up.length} map pixels (p = ${sel.percentile})`;
    topk.dataset.k = k;
  }

  function showMetrics() {
    const shown = state.box === null ? state.union : state.box.values;
    const box = state.box === null ? null : boxes[state.box.index];
    title.textContent = box ? `box ${box.bbox_index + 1}: ${box.feature}` : `union of ${boxes.length} boxes`;
    title.dataset.target = box ? box.bbox_index : "union";
    if (shown) metrics.show(shown);
    view.highlight(box ? box.bbox_index : null);
    rows.forEach((row, i) => row.classList.toggle("selected", box !== null && i === box.bbox_index));
    unionRow.classList.toggle("selected", box === null);
  }

  async function boxMetrics(index) {
    return api(`/metrics/${encodeURIComponent(imageId)}/bbox/${index}?${metricsQuery(sel)}`);
  }

  async function pick(index) {
    if (index === null || (state.box && state.box.index === index)) {
      state.box = null;  // back to the union: already held, no request
    } else {
      state.box = { index, values: await boxMetrics(index) };
    }
    showMetrics();
  }

  async function load() {
    try {
      const path = encodeURIComponent(imageId);
      const [map, union, box] = await Promise.all([
        api(`/maps/${path}?${metricsQuery(sel)}`), api(`/metrics/${path}?${metricsQuery(sel)}`),
        state.box ? boxMetrics(state.box.index) : null]);
      error.hidden = true;
      state.grid = map.grid;
      state.up = upsample(map.grid, profile.resolution);
      state.union = union;
      if (box) state.box.values = box;
      view.place(map.frame);
      paintHeat(view.heat, state.up, profile.resolution, state.cmap);
      view.heat.style.opacity = state.opacity;
      drawOutline();
      showMetrics();
      main.dataset.ready = `${imageId}|${metricsQuery(sel)}`;
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  }

  const opacity = el("input", { id: "opacity", type: "range", min: 0, max: 1, step: 0.05, value: state.opacity });
  opacity.addEventListener("input", () => {
    state.opacity = Number(opacity.value);
    view.heat.style.opacity = state.opacity;
    remember();
  });
  const cmap = dropdown("colormap", COLORMAPS.map((c) => [c, c]), state.cmap, (value) => {
    state.cmap = value;
    paintHeat(view.heat, state.up, profile.resolution, state.cmap);
    remember();
  });

  const order = imageOrder();
  const position = order.indexOf(imageId);
  const step = (delta) => {
    const next = order[(position + delta + order.length) % order.length];
    location.hash = href("image", next, { ...selectionQuery(sel), cmap: state.cmap, opacity: state.opacity });
  };
  const onKey = (event) => {
    if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
    if (event.key === "ArrowRight") step(1);
    if (event.key === "ArrowLeft") step(-1);
    if (event.key === "Escape") pick(null);
  };
  document.addEventListener("keydown", onKey);

  main.append(el("div", { class: "detail" },
    el("div", {},
      el("h3", {}, imageId, el("span", { class: "hint" },
        `  ${position + 1} of ${order.length} · ← → move between images`)),
      view.node,
      el("div", { class: "controls" },
        el("label", {}, "opacity", opacity), el("label", {}, "colour map", cmap),
        el("a", { href: href("compare", imageId, { a: metricsQuery(sel) }) }, "compare…")),
      topk,
      el("p", { class: "hint" }, "The heatmap covers the part of the image the model sees (its resize / "
        + "centre crop); the outline marks the pixels kept at the percentile, as scored.")),
    el("div", {},
      el("div", { class: "panel" }, el("h3", {}, "Map"), notice, widget.node),
      el("div", { class: "panel" }, title, metrics.table, error),
      el("div", { class: "panel" }, el("h3", {}, "Expert boxes"),
        el("table", { class: "data", id: "box-list" },
          el("tr", {}, el("th", {}, "#"), el("th", {}, "feature"), el("th", {}, "area")),
          unionRow, rows)))));
  await view.loaded;
  await load();
  return () => document.removeEventListener("keydown", onKey);
}
