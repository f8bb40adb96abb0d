// The dashboard's figures (docs/dashboard.md): the latency from a log line to the page drawing
// it (median over a live `gan-dist train --web` run), the page's transfer size on first load,
// and the load time of a finished 10,000-iteration run's page (a generated run directory served
// by `watch RUN --web`). Needs Chromium (scripts/chromium.ts).
//
//   npx tsx scripts/bench-web.ts [--iterations 40] [--finished 10000] [--loads 5] [--json] [--screenshots DIR]

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { serveRunDirDashboard } from '../monitor/web/watch-dashboard.ts';
import { parseWebAddress } from '../monitor/web/web-address.ts';
import { launchChromium } from './chromium.ts';
import { writeRunFixture } from './web-run-fixture.ts';

const cli = path.resolve(import.meta.dirname, '..', 'cmd', 'gan-dist.mjs');

interface PageLoad {
  /** From navigation start to the page drawn with the run's snapshot and its stream open. */
  loadMs: number;
  /** Bytes over the wire: every response's headers and (compressed) body, the redirect included. */
  transferBytes: number;
  requests: number;
  chartPoints: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? Number.NaN
    : s.length % 2
      ? s[(s.length - 1) / 2]
      : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

/** The page's globals the benchmark reads (type-checked without the DOM library). */
interface PageGlobals {
  dashboard?: { ready: boolean; state: { latencies: number[] }; charts: { scores: { data: number[][] } } };
  __readyAt?: number;
  requestAnimationFrame(fn: () => void): void;
}

/** One first load in a fresh browser context (no cache, no cookie). */
async function load(
  browser: Browser,
  loginUrl: string,
  viewport = { width: 1280, height: 800 },
): Promise<PageLoad & { page: Page }> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  let transferBytes = 0;
  let requests = 0;
  page.on('requestfinished', (req) => {
    requests++;
    void req.sizes().then((s) => {
      transferBytes += s.responseHeadersSize + s.responseBodySize;
    });
  });
  await page.goto(loginUrl);
  await page.waitForFunction(
    () => {
      const g = globalThis as unknown as PageGlobals;
      if (g.dashboard?.ready && g.__readyAt === undefined) g.__readyAt = performance.now();
      return g.dashboard?.ready;
    },
    null,
    { polling: 'raf', timeout: 60_000 },
  );
  // Drawn: two frames after ready, when the charts have their data on screen.
  const loadMs = await page.evaluate(() => {
    const g = globalThis as unknown as PageGlobals;
    return new Promise<number>((resolve) =>
      g.requestAnimationFrame(() => g.requestAnimationFrame(() => resolve(g.__readyAt!))),
    );
  });
  const chartPoints = await page.evaluate(
    () => (globalThis as unknown as PageGlobals).dashboard!.charts.scores.data[0].length,
  );
  // Let the last sizes() promises settle.
  await page.waitForLoadState('networkidle').catch(() => undefined);
  return { loadMs, transferBytes, requests, chartPoints, page };
}

async function finishedRun(browser: Browser, iterations: number, loads: number) {
  const fixture = await writeRunFixture({ iterations, sampleEvery: 100, evalEvery: 500 });
  const stop = new AbortController();
  const urls: string[] = [];
  let ready!: () => void;
  const listening = new Promise<void>((r) => (ready = r));
  // Each load needs a login link of its own (they are one-time): a watch process mints one; logins after it use the monitor secret.
  const serving = serveRunDirDashboard(fixture.runDir, {
    address: parseWebAddress('127.0.0.1:0'),
    print: () => {},
    signal: stop.signal,
    ganDistVersion: 'bench',
    onListening: (url) => {
      urls.push(url);
      ready();
    },
  });
  await listening;
  const origin = new URL(urls[0]).origin;
  const results: PageLoad[] = [];
  for (let i = 0; i < loads; i++) {
    const url = i === 0 ? urls[0] : `${origin}/?token=${fixture.monitorToken}`;
    const { page, ...r } = await load(browser, url);
    results.push(r);
    await page.context().close();
  }
  stop.abort();
  await serving;
  rmSync(path.dirname(fixture.runDir), { recursive: true, force: true });
  return { iterations, results };
}

async function liveRun(browser: Browser, iterations: number, shots?: string) {
  const dir = mkdtempSync(path.join(tmpdir(), 'gan-dist-bench-web-'));
  const runDir = path.join(dir, 'run');
  // Samples every 5 iterations and an SWD point every 10, so every panel has something to draw.
  const flags = `--preset tiny --data synthetic --workers 1 --iterations ${iterations} --validation-frequency 5`;
  const args = ['train', ...flags.split(' '), '--eval-every', '10', '--eval-count', '64'];
  args.push('--run-dir', runDir, '--no-tui', '--web', '127.0.0.1:0');
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const urlFile = path.join(runDir, 'web.url');
  while (!existsSync(urlFile)) await new Promise((r) => setTimeout(r, 50));
  const { page, ...first } = await load(browser, readFileSync(urlFile, 'utf8').trim());
  if (shots) await screenshots(browser, page, runDir, shots, Math.floor(iterations * 0.6));
  const code = await exited;
  const latencies = await page.evaluate(() =>
    (globalThis as unknown as PageGlobals).dashboard!.state.latencies.slice(),
  );
  await page.context().close();
  rmSync(dir, { recursive: true, force: true });
  return { iterations, code, first, latencies };
}

/** The page mid-run at 1280x800 (control login) and at a phone's 390x844 (monitor login, the whole page). */
async function screenshots(browser: Browser, desktop: Page, runDir: string, dir: string, at: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await desktop.waitForFunction(
    (n) => ((globalThis as unknown as PageGlobals).dashboard!.charts.scores.data[0].at(-1) ?? 0) >= n,
    at,
    { timeout: 300_000 },
  );
  await desktop.screenshot({ path: path.join(dir, 'dashboard-1280x800.png') });
  const monitor = readFileSync(path.join(runDir, 'monitor.token'), 'utf8').match(/^token=(.*)$/m)![1];
  const { page: phone } = await load(browser, `${new URL(desktop.url()).origin}/?token=${monitor}`, {
    width: 390,
    height: 844,
  });
  await phone.screenshot({ path: path.join(dir, 'dashboard-390x844.png') });
  await phone.screenshot({ path: path.join(dir, 'dashboard-390-full.png'), fullPage: true });
  await phone.context().close();
}

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '40' },
    finished: { type: 'string', default: '10000' },
    loads: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    screenshots: { type: 'string' },
  },
});
const browser = await launchChromium();
try {
  const live = await liveRun(browser, Number(values.iterations), values.screenshots);
  const finished = await finishedRun(browser, Number(values.finished), Number(values.loads));
  const report = {
    browser: browser.version(),
    live: {
      iterations: live.iterations,
      exitCode: live.code,
      updates: live.latencies.length,
      latencyMs: {
        median: median(live.latencies),
        p90: quantile(live.latencies, 0.9),
        max: Math.max(...live.latencies),
      },
      firstLoad: live.first,
    },
    finished: {
      iterations: finished.iterations,
      chartPoints: finished.results[0].chartPoints,
      loadMs: {
        median: median(finished.results.map((r) => r.loadMs)),
        each: finished.results.map((r) => Math.round(r.loadMs)),
      },
      transferBytes: {
        first: finished.results[0].transferBytes,
        later: finished.results.slice(1).map((r) => r.transferBytes),
      },
      requests: finished.results[0].requests,
    },
  };
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else {
    const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
    console.log(`Chromium ${report.browser}`);
    console.log(
      `live run (${live.iterations} iterations, tiny preset, 1 worker): log line -> page drawn, median ${report.live.latencyMs.median.toFixed(1)} ms, p90 ${report.live.latencyMs.p90} ms, max ${report.live.latencyMs.max} ms over ${live.latencies.length} updates`,
    );
    console.log(
      `  first load: ${kb(live.first.transferBytes)} in ${live.first.requests} requests, drawn in ${live.first.loadMs.toFixed(0)} ms`,
    );
    console.log(
      `finished run (${finished.iterations} iterations): ${report.finished.chartPoints} chart points, first load ${kb(report.finished.transferBytes.first)} in ${report.finished.requests} requests, drawn in ${report.finished.loadMs.median.toFixed(0)} ms (median of ${finished.results.length}: ${report.finished.loadMs.each.join(', ')})`,
    );
  }
} finally {
  await browser.close();
}
