// Gallery: thumbnails with their boxes; filter by image label and feature type; sort by a score.
import { boxLayer } from "../draw.js";
import { api, dropdown, el, fmt, href, setHash } from "../util.js";

let images = null;  // the list does not change while the page is open
const sides = {};  // "right|model" -> the image ids that model's prediction puts on that side

function thumbnail(image) {
  const src = `/images/${encodeURIComponent(image.image_id)}/file?max_side=256`;
  return el("div", { class: "stage" }, el("img", { src, alt: image.image_id, loading: "lazy" }),
            boxLayer(image.boxes).layer);
}

// ✓ / ✗: the model's prediction on the image was right / wrong; nothing without a classifier
function mark(correct) {
  if (correct === null || correct === undefined) return null;
  return el("span", { class: "correct", title: correct ? "prediction right" : "prediction wrong" },
            correct ? "✓" : "✗");
}

export async function galleryView(main, { query, profile }) {
  images ??= await api("/images");
  const labels = [...new Set(images.map((i) => i.label).filter((l) => l != null))].sort();
  const features = [...new Set(images.flatMap((i) => i.boxes.map((b) => b.feature)))].sort();
  const state = { label: query.get("label") || "", feature: query.get("feature") || "",
                  sort: query.get("sort") || profile.models[0].model, order: query.get("order") || "best",
                  correct: query.get("correct") || "all" };
  const note = el("p", { class: "hint", id: "correct-note" });
  const grid = el("div", { class: "gallery", id: "gallery" });
  const count = el("span", { class: "hint" });

  const choice = (name, options, label) => el("label", {}, label,
    dropdown(`gallery-${name}`, options, state[name], (value) => { state[name] = value; render(); }));

  // right / wrong: the images whose prediction (by the model the gallery sorts by) the API
  // puts on that side; an error (a model with no classifier) is shown, and nothing filtered
  async function side(model) {
    const key = `${state.correct}|${model}`;
    sides[key] ??= api(`/images?correct=${state.correct}&model=${encodeURIComponent(model)}`)
      .then((list) => new Set(list.map((i) => i.image_id)));
    return sides[key];
  }

  async function render() {
    setHash("gallery", null, state);
    const model = state.sort === "id" ? profile.models[0].model : state.sort;
    let keep = null;
    note.textContent = "";
    if (state.correct !== "all") {
      try {
        keep = await side(model);
        note.textContent = `Images ${model}'s prediction gets ${state.correct}.`;
      } catch (error) {
        delete sides[`${state.correct}|${model}`];
        note.textContent = String(error.message || error);
        note.classList.add("error");
      }
    }
    note.classList.toggle("error", state.correct !== "all" && keep === null);
    let shown = images.filter((i) => (!state.label || i.label === state.label)
      && (!state.feature || i.boxes.some((b) => b.feature === state.feature))
      && (keep === null || keep.has(i.image_id)));
    if (state.sort !== "id") {
      const score = (i) => i.scores[state.sort] ?? (state.order === "best" ? -Infinity : Infinity);
      shown = [...shown].sort((a, b) => (state.order === "best" ? score(b) - score(a) : score(a) - score(b)));
    }
    sessionStorage.setItem("sightline-order", JSON.stringify(shown.map((i) => i.image_id)));
    count.textContent = `${shown.length} of ${images.length} images`;
    grid.replaceChildren(...shown.map((image) => el("div", {
      class: "card", "data-image": image.image_id,
      onclick: () => { location.hash = href("image", image.image_id, { model }); },
    }, thumbnail(image), el("div", { class: "caption" },
      el("span", {}, image.image_id), el("span", {}, image.label ?? ""),
      el("span", { class: "score", title: `headline union IoU of ${model}` }, fmt(image.scores[model], 3)),
      mark(image.correct[model])))));
    main.dataset.ready = `gallery|${state.correct}`;
  }

  main.append(
    el("div", { class: "controls" },
      ...(labels.length ? [choice("label", [["", "all labels"], ...labels.map((s) => [s, s])], "label")] : []),
      choice("feature", [["", "all feature types"], ...features.map((f) => [f, f])], "feature"),
      choice("sort", [["id", "image id"], ...profile.models.map((m) => [m.model, m.model])], "sort by"),
      choice("order", [["best", "best first"], ["worst", "worst first"]], ""),
      choice("correct", [["all", "all predictions"], ["right", "right"], ["wrong", "wrong"]],
             "prediction"),
      count),
    note,
    el("p", { class: "hint", id: "headline-note" }, `Scores: each model's headline map, the Q1 `
      + `leaderboard's (the method with the highest cross-fitted IoU, at its best layer; head mean) `
      + `against the union of the boxes, IoU at p = ${profile.headline_percentile}: `
      + profile.models.map((m) => `${m.model} ${m.default.method} · layer ${m.default.layer}`
        + (m.headline ? "" : " (not on the leaderboard)")).join("; ") + "."),
    grid);
  render();
}
