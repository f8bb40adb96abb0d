// Fewer chart points for long runs: a 100,000-iteration run must not send 100,000 points on
// every load. Up to `maxPoints` every iteration is its own point; beyond, consecutive
// iterations are pooled into equal buckets, each drawn at its mean iteration with the mean of
// each series (a GAN's scores are noisy: a bucket's mean shows the trend a stride would alias),
// and the newest iteration is always kept as it is, so the chart ends where the run is.

/** Points the page's charts get at most (about one per horizontal pixel of a wide chart). */
export const MAX_CHART_POINTS = 1500;

/** Columns of equal length; column 0 is the x axis (iterations). */
export type Columns = number[][];

/** `columns` as they are when short enough, else bucket means; `bucket` is the iterations per point (1: none pooled). */
export function decimate(columns: Columns, maxPoints = MAX_CHART_POINTS): { columns: Columns; bucket: number } {
  const n = columns[0]?.length ?? 0;
  if (n <= maxPoints) return { columns: columns.map((c) => c.slice()), bucket: 1 };
  // The last point stays exact, so the others share maxPoints - 1 buckets.
  const bucket = Math.ceil((n - 1) / (maxPoints - 1));
  const out: Columns = columns.map(() => []);
  for (let start = 0; start < n - 1; start += bucket) {
    const end = Math.min(start + bucket, n - 1);
    for (let c = 0; c < columns.length; c++) {
      const col = columns[c];
      let sum = 0;
      for (let i = start; i < end; i++) sum += col[i];
      out[c].push(c === 0 ? sum / (end - start) : round(sum / (end - start)));
    }
  }
  for (let c = 0; c < columns.length; c++) out[c].push(columns[c][n - 1]);
  return { columns: out, bucket };
}

/** Five significant digits: what the log itself carries, and a third of the JSON of full doubles. */
function round(v: number): number {
  return Number.isFinite(v) ? Number(v.toPrecision(5)) : v;
}
