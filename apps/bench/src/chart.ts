import type { BenchResult } from "./harness.js";

const escapeXml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * A horizontal bar chart of each result's ratio to its baseline, with a line
 * at 1.0 (as fast as the baseline). Plain SVG, no dependencies.
 */
export function renderChart(results: BenchResult[]): string {
  const rowHeight = 22;
  const labelWidth = 430;
  const barWidth = 360;
  const top = 30;
  const height = top + results.length * rowHeight + 20;
  const maxRatio = Math.max(1.2, ...results.map((r) => r.ratio));
  const x = (ratio: number) => labelWidth + (ratio / maxRatio) * barWidth;
  const rows = results.map((r, i) => {
    const y = top + i * rowHeight;
    const colour = r.ratio >= 0.8 ? "#2a9d8f" : "#e76f51";
    return [
      `<text x="${labelWidth - 8}" y="${y + 15}" text-anchor="end">${escapeXml(r.name)}</text>`,
      `<rect x="${labelWidth}" y="${y + 3}" width="${Math.max(1, x(r.ratio) - labelWidth)}" height="${rowHeight - 6}" fill="${colour}"/>`,
      `<text x="${x(r.ratio) + 4}" y="${y + 15}">${r.ratio.toFixed(2)} × ${escapeXml(r.baseline)}</text>`,
    ].join("");
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + barWidth + 260}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="18" font-weight="bold">r3map benchmarks: ratio to the baseline measured in the same run (higher is better)</text>`,
    ...rows,
    `<line x1="${x(1)}" y1="${top}" x2="${x(1)}" y2="${height - 20}" stroke="#264653" stroke-dasharray="4 3"/>`,
    "</svg>",
    "",
  ].join("\n");
}
