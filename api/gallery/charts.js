// Line charts as plain SVG: loss curves while a job trains. Colours follow member index, the
// same in every chart and in every picture the service draws (kgan_core.render.MEMBER_COLOURS),
// so member 3 is always the same colour.

const SVG = "http://www.w3.org/2000/svg";
export const MEMBER_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                               "#7f7f7f", "#bcbd22", "#17becf"];
export const memberColour = (k) => MEMBER_COLOURS[k % MEMBER_COLOURS.length];

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

const label = (v) => (Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : v.toFixed(2));

// A single report has no x range to draw: each member's value as a dot, with the step it came from.
function oneReport(svg, series, { width, height, pad, xLabel }) {
  const values = series.map((line) => [line, line.points.find(([, y]) => Number.isFinite(y))]).filter(([, p]) => p);
  const ys = values.map(([, [, y]]) => y);
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const Y = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  const x = pad.left + 24;
  svg.append(s("line", { x1: pad.left, y1: Y(y0), x2: pad.left, y2: Y(y1), class: "axis" }));
  svg.append(s("text", { x: pad.left - 4, y: Y(y1) + 4, "text-anchor": "end", class: "tick" }, label(y1)));
  svg.append(s("text", { x: pad.left - 4, y: Y(y0), "text-anchor": "end", class: "tick" }, label(y0)));
  for (const [line, [, y]] of values) {
    const dot = s("circle", { cx: x, cy: Y(y), r: Math.min(4, height / 12), fill: line.colour, class: "dot" });
    dot.append(s("title", {}, `${line.name}: ${label(y)}`));
    svg.append(dot);
  }
  const step = values[0][1][0];
  svg.append(s("text", { x: pad.left + 4, y: height - 6, class: "tick chart-note" },
               width >= 240 ? `one report so far (${xLabel} ${step})` : `1 report, ${xLabel} ${step}`));
  return svg;
}

// series: [{name, colour, points: [[x, y], ...], dashed}]
export function lineChart(series, { width = 320, height = 160, title = "", xLabel = "step" } = {}) {
  const pad = { left: 46, right: 8, top: title ? 18 : 8, bottom: 22 };
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
                         "aria-label": title || "chart" });
  const points = series.flatMap((line) => line.points).filter(([, y]) => Number.isFinite(y));
  if (title) svg.append(s("text", { x: pad.left, y: 12, class: "chart-title" }, title));
  if (!points.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" },
                 "waiting for progress reports…"));
    return svg;
  }
  if (new Set(points.map(([x]) => x)).size === 1) return oneReport(svg, series, { width, height, pad, xLabel });
  const xs = points.map(([x]) => x), ys = points.map(([, y]) => y);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const X = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const Y = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  svg.append(s("line", { x1: pad.left, y1: Y(y0), x2: width - pad.right, y2: Y(y0), class: "axis" }));
  svg.append(s("line", { x1: pad.left, y1: Y(y0), x2: pad.left, y2: Y(y1), class: "axis" }));
  svg.append(s("text", { x: pad.left - 4, y: Y(y1) + 4, "text-anchor": "end", class: "tick" }, label(y1)));
  svg.append(s("text", { x: pad.left - 4, y: Y(y0), "text-anchor": "end", class: "tick" }, label(y0)));
  if (y0 < 0 && y1 > 0) {
    svg.append(s("line", { x1: pad.left, y1: Y(0), x2: width - pad.right, y2: Y(0), class: "zero" }));
  }
  svg.append(s("text", { x: pad.left, y: height - 6, class: "tick" }, String(x0)));
  svg.append(s("text", { x: width - pad.right, y: height - 6, "text-anchor": "end", class: "tick" },
               `${xLabel} ${x1}`));
  for (const line of series) {
    const finite = line.points.filter(([, y]) => Number.isFinite(y));
    if (!finite.length) continue;
    const d = finite.map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
    const path = s("path", { d, stroke: line.colour, class: line.dashed ? "line dashed" : "line" });
    path.append(s("title", {}, line.name));
    svg.append(path);
  }
  return svg;
}
