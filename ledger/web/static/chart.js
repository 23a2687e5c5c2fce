// A hand-drawn SVG chart of /v1/activity: committed transactions per second (bars, left axis) and
// mean block time (line, right axis) per bucket. Scales to its box through the viewBox.

import { h, s } from "./dom.js";

const W = 640;
const H = 220;
const PAD = { left: 48, right: 56, top: 12, bottom: 28 };

/** A round number at or above v (1, 2, 2.5, 5 times a power of ten), for the axis top. */
function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(n) {
  return n >= 1000 ? `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)}k` : String(Math.round(n * 10) / 10);
}

function summary(buckets, windowMin, bucketMs) {
  const txs = buckets.reduce((a, b) => a + b.txs, 0);
  const blocks = buckets.reduce((a, b) => a + b.blocks, 0);
  const times = buckets.filter(b => b.block_time_ms !== null);
  const meanTime = times.length ? Math.round(times.reduce((a, b) => a + b.block_time_ms, 0) / times.length) : null;
  const last = buckets[buckets.length - 1];
  return `Last ${windowMin} minutes: ${txs} transactions in ${blocks} blocks; ` +
    `${last ? last.tx_per_s : 0} tx/s in the latest ${bucketMs / 1000} s; ` +
    (meanTime === null ? "no block intervals yet." : `mean block time ${meanTime} ms.`);
}

export function activityChart(data) {
  const buckets = data.buckets;
  const n = buckets.length;
  const windowMin = Math.round((n * data.bucket_ms) / 60000);
  const maxTps = niceMax(Math.max(1, ...buckets.map(b => b.tx_per_s)));
  const times = buckets.map(b => b.block_time_ms).filter(t => t !== null);
  const maxTime = niceMax(Math.max(100, ...times));
  const pw = W - PAD.left - PAD.right;
  const ph = H - PAD.top - PAD.bottom;
  const bw = pw / n;
  const base = PAD.top + ph;
  const yTps = v => base - (v / maxTps) * ph;
  const yTime = v => base - (v / maxTime) * ph;
  const text = summary(buckets, windowMin, data.bucket_ms);

  const grid = [0, 0.5, 1].map(f => {
    const y = base - f * ph;
    return [
      s("line", { class: f === 0 ? "axis" : "grid-line", x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }),
      s("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, fmt(maxTps * f)),
      s("text", { x: W - PAD.right + 6, y: y + 4 }, `${fmt(maxTime * f)} ms`),
    ];
  });
  const bars = buckets.map((b, i) => b.tx_per_s > 0
    ? s("rect", { class: "bar", x: PAD.left + i * bw + 0.5, width: Math.max(1, bw - 1), y: yTps(b.tx_per_s),
      height: base - yTps(b.tx_per_s) }, s("title", {}, `${b.tx_per_s} tx/s`))
    : null);
  // The block-time line is broken where a bucket had no block interval.
  let d = "";
  let pen = false;
  const dots = [];
  buckets.forEach((b, i) => {
    if (b.block_time_ms === null) {
      pen = false;
      return;
    }
    const x = PAD.left + (i + 0.5) * bw;
    const y = yTime(b.block_time_ms);
    d += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    pen = true;
    dots.push(s("circle", { class: "dot", cx: x, cy: y, r: 2 }));
  });
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": text },
    s("title", {}, text), grid, bars, d ? s("path", { class: "line", d }) : null, dots,
    s("text", { x: PAD.left, y: H - 8 }, `−${windowMin} min`),
    s("text", { x: W - PAD.right, y: H - 8, "text-anchor": "end" }, "now"));
  return h("figure", { class: "chart" }, svg,
    h("ul", { class: "legend" },
      h("li", {}, h("span", { class: "key bar", "aria-hidden": "true" }), "committed transactions per second (left)"),
      h("li", {}, h("span", { class: "key line", "aria-hidden": "true" }), "mean block time (right)")),
    h("figcaption", { class: "muted" }, text));
}

/** A token's sales as an SVG chart: each sale a dot at its time and price, joined in time order. */
export function priceChart(sales) {
  const points = [...sales].sort((a, b) => a.timestamp - b.timestamp);
  const maxPrice = niceMax(Math.max(1, ...points.map(p => p.price)));
  const t0 = points[0].timestamp;
  const span = Math.max(1, points[points.length - 1].timestamp - t0);
  const pw = W - PAD.left - PAD.right;
  const ph = H - PAD.top - PAD.bottom;
  const base = PAD.top + ph;
  const x = t => PAD.left + (points.length === 1 ? pw / 2 : ((t - t0) / span) * pw);
  const y = v => base - (v / maxPrice) * ph;
  const last = points[points.length - 1];
  const text = `${points.length} sale${points.length === 1 ? "" : "s"}; the last for ${last.price} credits.`;
  const grid = [0, 0.5, 1].map(f => [
    s("line", { class: f === 0 ? "axis" : "grid-line", x1: PAD.left, x2: W - PAD.right, y1: base - f * ph, y2: base - f * ph }),
    s("text", { x: PAD.left - 6, y: base - f * ph + 4, "text-anchor": "end" }, fmt(maxPrice * f)),
  ]);
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(p.timestamp).toFixed(1)},${y(p.price).toFixed(1)}`).join("");
  const dots = points.map(p => s("circle", { class: "dot sale", cx: x(p.timestamp), cy: y(p.price), r: 3 },
    s("title", {}, `${p.price} credits, block ${p.height}`)));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": text },
    s("title", {}, text), grid, s("path", { class: "line", d }), dots,
    s("text", { x: PAD.left, y: H - 8 }, new Date(t0).toISOString().slice(0, 10)),
    s("text", { x: W - PAD.right, y: H - 8, "text-anchor": "end" }, new Date(last.timestamp).toISOString().slice(0, 10)));
  return h("figure", { class: "chart price-chart" }, svg,
    h("ul", { class: "legend" }, h("li", {}, h("span", { class: "key line", "aria-hidden": "true" }), "price paid, credits")),
    h("figcaption", { class: "muted" }, text));
}
