// Maps on canvases: bilinear upsampling as the scoring does it, colour maps, the top-k
// outline, and a "stage" (image + heatmap in the model's frame + expert boxes).
import { el, svg } from "./util.js";

const STOPS = {  // a few anchors of each colour map, interpolated linearly
  viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
            "#6ece58", "#b5de2b", "#fde725"],
  magma: ["#000004", "#180f3d", "#440f76", "#721f81", "#9e2f7f", "#cd4071", "#f1605d",
          "#fd9668", "#feca8d", "#fcfdbf"],
  gray: ["#000000", "#ffffff"],
};
export const COLORMAPS = Object.keys(STOPS);

const luts = {};
function lut(name) {
  if (luts[name]) return luts[name];
  const stops = STOPS[name].map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (stops.length - 1);
    const j = Math.min(Math.floor(t), stops.length - 2);
    for (let c = 0; c < 3; c++) table[i * 3 + c] = stops[j][c] + (stops[j + 1][c] - stops[j][c]) * (t - j);
  }
  return (luts[name] = table);
}

// (h, w) grid -> R x R Float32Array; bilinear with align_corners=False, as torch's interpolate.
export function upsample(grid, R) {
  const h = grid.length, w = grid[0].length;
  const axis = (n) => Array.from({ length: R }, (_, i) => {
    const src = Math.max((i + 0.5) * (n / R) - 0.5, 0);
    const i0 = Math.min(Math.floor(src), n - 1);
    return [i0, Math.min(i0 + 1, n - 1), src - i0];
  });
  const ys = axis(h), xs = axis(w);
  const out = new Float32Array(R * R);
  for (let y = 0; y < R; y++) {
    const [y0, y1, ly] = ys[y];
    for (let x = 0; x < R; x++) {
      const [x0, x1, lx] = xs[x];
      const top = grid[y0][x0] * (1 - lx) + grid[y0][x1] * lx;
      const bottom = grid[y1][x0] * (1 - lx) + grid[y1][x1] * lx;
      out[y * R + x] = top * (1 - ly) + bottom * ly;
    }
  }
  return out;
}

// Pixels kept at percentile p: round(n (100 - p) / 100), halves to even (the metrics' rule).
export function topKSize(n, p) {
  const x = (n * (100 - p)) / 100;
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 === 1 ? r - 1 : r;
}

// The top-k mask: the k highest values, ties to the lower index (a stable descending sort).
export function topKMask(values, p) {
  const k = topKSize(values.length, p);
  const order = Uint32Array.from(values.keys()).sort((a, b) => values[b] - values[a] || a - b);
  const mask = new Uint8Array(values.length);
  for (let i = 0; i < k; i++) mask[order[i]] = 1;
  return { mask, k };
}

// Values -> [0, 1] by the map's own min and max (a flat map is all 0).
export function normalise(values) {
  let min = Infinity, max = -Infinity;
  for (const v of values) { min = Math.min(min, v); max = Math.max(max, v); }
  return values.map((v) => (max > min ? (v - min) / (max - min) : 0));
}

// An R x R canvas drawn pixel by pixel: rgba(i) is pixel i's colour (null: transparent).
function paint(canvas, R, rgba) {
  const image = new ImageData(R, R);
  for (let i = 0; i < R * R; i++) {
    const colour = rgba(i);
    if (colour) image.data.set(colour, i * 4);
  }
  canvas.width = canvas.height = R;
  canvas.getContext("2d").putImageData(image, 0, 0);
}

export function paintHeat(canvas, values, R, cmap) {
  const table = lut(cmap);
  const scaled = normalise(values);
  paint(canvas, R, (i) => {
    const j = Math.round(scaled[i] * 255) * 3;
    return [table[j], table[j + 1], table[j + 2], 255];
  });
}

// Signed values in [-1, 1] as blue (negative) - white - red (positive).
export function paintDiverging(canvas, values, R) {
  paint(canvas, R, (i) => {
    const v = Math.max(-1, Math.min(1, values[i]));
    const fade = Math.round(255 * (1 - Math.abs(v)));
    return v >= 0 ? [255, fade, fade, 255] : [fade, fade, 255, 255];
  });
}

// The border pixels of a mask (in the mask, with a 4-neighbour outside it), in white.
export function paintOutline(canvas, mask, R) {
  const inside = (x, y) => x >= 0 && y >= 0 && x < R && y < R && mask[y * R + x];
  paint(canvas, R, (i) => {
    const x = i % R, y = (i - x) / R;
    const edge = inside(x, y) && !(inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1));
    return edge ? [255, 255, 255, 255] : null;
  });
}

// The expert boxes as SVG rectangles over a unit square stretched to the image.
export function boxLayer(boxes) {
  const layer = svg("svg", { viewBox: "0 0 1 1", preserveAspectRatio: "none" });
  const rects = boxes.map((box) => svg("rect", { x: box.left, y: box.top, width: box.width, height: box.height }));
  layer.append(...rects);
  return { layer, rects };
}

// Image with a heatmap over the model's frame, a top-k outline and the expert boxes.
// frame = [x0, y0, x1, y1] relative to the image. Returns the pieces for later updates.
export function stage(imageUrl, boxes, { onBox } = {}) {
  const img = el("img", { src: imageUrl, alt: "image" });
  const heat = el("canvas", { class: "heat" });
  const outline = el("canvas", { class: "outline" });
  const { layer, rects } = boxLayer(boxes);
  boxes.forEach((box, i) => {
    rects[i].dataset.index = box.bbox_index;
    if (onBox) {
      rects[i].classList.add("pick");
      rects[i].addEventListener("click", (event) => { event.stopPropagation(); onBox(box.bbox_index); });
    }
    rects[i].append(svg("title", {}, `box ${box.bbox_index + 1}: ${box.feature}`));
  });
  const node = el("div", { class: "stage" }, img, heat, outline, layer);
  const place = (frame) => {
    for (const canvas of [heat, outline]) {
      Object.assign(canvas.style, { left: `${frame[0] * 100}%`, top: `${frame[1] * 100}%`,
        width: `${(frame[2] - frame[0]) * 100}%`, height: `${(frame[3] - frame[1]) * 100}%` });
    }
  };
  const highlight = (index) => rects.forEach((rect, i) => {
    rect.classList.toggle("selected", i === index);
    rect.classList.toggle("dim", index !== null && i !== index);
  });
  return { node, img, heat, outline, place, highlight, loaded: img.decode().catch(() => {}) };
}
