// The dashboard's charts, drawn with uPlot (loaded as a classic script: the global `uPlot`):
// scores, losses, images/s and the SWD with its floor, each sized to its card and redrawn
// when the card's width changes (a phone turned, a window resized).

/* global uPlot */

const COLORS = { g: '#d9480f', d: '#1c7ed6', floor: '#868e96', speed: '#2b8a3e', swd: '#7048e8' };

function height(el) {
  return el.clientWidth < 500 ? 170 : 200;
}

function line(label, stroke, extra = {}) {
  return { label, stroke, width: 1.5, points: { show: false }, ...extra };
}

function makeChart(el, series, opts = {}) {
  const u = new uPlot(
    {
      width: Math.max(200, el.clientWidth),
      height: height(el),
      series: [{ label: 'iteration', value: (_u, v) => (v == null ? '-' : Math.round(v)) }, ...series],
      scales: { x: { time: false }, ...(opts.scales ?? {}) },
      axes: [{ label: 'iteration' }, { size: 50 }],
      cursor: { drag: { x: true, y: false } },
      // Labels only: values under the cursor would need a row of their own on a phone.
      legend: { live: false },
    },
    series.map(() => []).concat([[]]),
    el,
  );
  new ResizeObserver(() => {
    const w = Math.max(200, el.clientWidth);
    if (w !== u.width) u.setSize({ width: w, height: height(el) });
  }).observe(el);
  return u;
}

export class Charts {
  constructor(doc) {
    this.scores = makeChart(
      doc.getElementById('chart-scores'),
      [line('GeneratorScore', COLORS.g), line('DiscriminatorScore', COLORS.d)],
      { scales: { y: { range: [0, 1] } } },
    );
    this.losses = makeChart(doc.getElementById('chart-losses'), [line('lossG', COLORS.g), line('lossD', COLORS.d)]);
    this.speed = makeChart(doc.getElementById('chart-speed'), [line('images/s', COLORS.speed)]);
    this.swdCard = doc.getElementById('swd-card');
    this.swdEl = doc.getElementById('chart-swd');
    this.swd = undefined;
  }

  /** series: [iteration, scoreG, scoreD, lossG, lossD, imagesPerSec] columns. */
  setSeries(s) {
    this.scores.setData([s[0], s[1], s[2]]);
    this.losses.setData([s[0], s[3], s[4]]);
    this.speed.setData([s[0], s[5]]);
  }

  /** ev: { iteration, swd, floor }: shown only once an evaluation exists (--eval-every). */
  setEval(ev) {
    if (ev.iteration.length === 0 && ev.floor === undefined) return;
    if (this.swdCard.hidden) this.swdCard.hidden = false;
    // The chart is made once its card is visible, so it gets the card's width.
    this.swd ??= makeChart(this.swdEl, [
      line('SWD', COLORS.swd, { points: { show: true, size: 5 } }),
      line('floor', COLORS.floor, { dash: [6, 4] }),
    ]);
    const floor = ev.iteration.map(() => ev.floor ?? null);
    this.swd.setData([ev.iteration, ev.swd, floor]);
  }
}
