// The dashboard in a real browser (Debian's Chromium, driven by playwright-core): a live
// `gan-dist train --web` run watched and stopped from the page, and a finished run directory
// replayed by `gan-dist watch RUN --web`, its worker-supplied strings shown as text.

import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { killStartedClis, startCli } from '../../support/cli.ts';
import { describeChromium, launchChromium } from '../../support/chromium.ts';
import { waitFor, withDeadline } from '../../support/wait.ts';
import { serveRunDirDashboard } from '../../../monitor/web/watch-dashboard.ts';
import { parseWebAddress } from '../../../monitor/web/web-address.ts';
import { writeRunFixture } from '../../../scripts/web-run-fixture.ts';

const records = (runDir: string): Record<string, unknown>[] =>
  existsSync(path.join(runDir, 'train.log'))
    ? readFileSync(path.join(runDir, 'train.log'), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l))
    : [];
const iterationsOf = (runDir: string) =>
  records(runDir)
    .filter((r) => r.msg === 'iteration')
    .map((r) => r.iteration as number);
const samplesOf = (runDir: string) =>
  records(runDir)
    .filter((r) => r.event === 'sample-written')
    .map((r) => r.iteration as number);

/** The page's globals as the tests read them (this file is type-checked without the DOM library). */
interface PageElement {
  textContent: string | null;
  children: ArrayLike<PageElement>;
}
interface PageImage {
  complete: boolean;
  naturalWidth: number;
  getAttribute(name: string): string | null;
}
interface PageGlobals {
  dashboard?: {
    ready: boolean;
    charts: { scores: { data: number[][] } };
    samples: { list: { iteration: number; file: string }[] };
  };
  document: { getElementById(id: string): unknown; querySelectorAll(selector: string): ArrayLike<PageElement> };
  pwned?: unknown;
}

/** What the page holds: chart x values, the sample shown and its size, the workers table. */
const pageState = (page: Page) =>
  page.evaluate(() => {
    const g = globalThis as unknown as PageGlobals;
    const d = g.dashboard!;
    const img = g.document.getElementById('sample') as PageImage;
    return {
      x: Array.from(d.charts.scores.data[0]),
      samples: d.samples.list.map((s) => s.iteration),
      src: img.getAttribute('src'),
      loaded: img.complete && img.naturalWidth > 0,
      workers: Array.from(g.document.querySelectorAll('#workers tbody tr')).map((tr) =>
        Array.from(tr.children).map((td) => td.textContent),
      ),
    };
  });

describeChromium('the dashboard in Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });
  afterEach(() => killStartedClis());

  it('follows a live train --web run: a chart point per iteration, the newest grid, the slider, the workers, and Stop stops the run', async () => {
    const runDir = path.join(mkdtempSync(path.join(tmpdir(), 'gan-dist-web-')), 'run');
    const cli = startCli([
      'train',
      ...['--preset', 'tiny', '--data', 'synthetic', '--workers', '1', '--iterations', '1000'],
      ...['--validation-frequency', '2', '--checkpoint-every', '0', '--run-dir', runDir, '--no-tui'],
      ...['--web', '127.0.0.1:0'],
    ]);
    const urlFile = path.join(runDir, 'web.url');
    await waitFor(() => existsSync(urlFile) || cli.child.exitCode !== null, 'RUN_DIR/web.url', 60_000);
    const loginUrl = readFileSync(urlFile, 'utf8').trim();
    const origin = new URL(loginUrl).origin;
    expect(cli.stdout()).toContain(loginUrl);

    // Without the cookie: 401 and nothing of the run.
    const refused = await fetch(`${origin}/api/snapshot`);
    expect(refused.status).toBe(401);
    expect(await refused.text()).not.toMatch(/scoreG|iteration/);

    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const first = await page.goto(loginUrl);
    expect(first?.status()).toBe(200);
    expect(page.url()).toBe(`${origin}/`); // the token left the address bar
    // The link was used up: a second browser with it is refused.
    expect((await fetch(loginUrl, { redirect: 'manual' })).status).toBe(401);

    // Three grids saved (iterations 1, 2, 4): the page shows the newest, loaded.
    await waitFor(() => samplesOf(runDir).length >= 3, 'three sample grids', 90_000, 100);
    await page.waitForFunction(
      () => {
        const g = globalThis as unknown as PageGlobals;
        const d = g.dashboard;
        const img = g.document.getElementById('sample') as PageImage;
        const newest = d?.samples.list.at(-1);
        return (
          d?.ready &&
          d.samples.list.length >= 3 &&
          img.getAttribute('src') === `/samples/${newest?.file}` &&
          img.complete &&
          img.naturalWidth > 0
        );
      },
      null,
      { timeout: 10_000 },
    );
    const live = await pageState(page);
    expect(live.loaded).toBe(true);
    expect(live.src).toBe(`/samples/iter-${String(live.samples.at(-1)).padStart(6, '0')}.png`);

    // The slider to the first grid: that iteration's file, loaded, and it stays there as new grids arrive.
    await page.locator('#slider').fill('0');
    await page.waitForFunction(() => {
      const img = (globalThis as unknown as PageGlobals).document.getElementById('sample') as PageImage;
      return img.getAttribute('src') === '/samples/iter-000001.png' && img.complete && img.naturalWidth > 0;
    });
    const held = live.samples.length;
    await page.waitForFunction((n) => (globalThis as unknown as PageGlobals).dashboard!.samples.list.length > n, held, {
      timeout: 60_000,
    });
    expect((await pageState(page)).src).toBe('/samples/iter-000001.png');

    // The workers table lists the worker that joined, with its device and backend.
    const joined = records(runDir).find((r) => r.event === 'worker-joined' && r.role === 'worker')!;
    const workers = (await pageState(page)).workers;
    expect(workers).toHaveLength(1);
    expect(workers[0].slice(1, 3)).toEqual([joined.device, joined.backend]);
    expect(workers[0][4]).toBe('joined');

    // Stop, confirmed: the run checkpoints and exits 0.
    page.once('dialog', (dialog) => void dialog.accept());
    await page.click('#stop');
    const exit = await withDeadline(cli.exited, 'train to exit after Stop', 60_000);
    expect(exit.code, exit.stderr).toBe(0);
    const lines = records(runDir);
    expect(lines.find((r) => r.event === 'stop-requested')?.reason).toMatch(/Stop pressed on the dashboard/);
    expect(lines.some((r) => r.event === 'checkpoint-written')).toBe(true);

    // Every logged iteration reached the page before the server closed: a point each.
    const logged = iterationsOf(runDir);
    await page.waitForFunction(
      (n) => (globalThis as unknown as PageGlobals).dashboard!.charts.scores.data[0].length === n,
      logged.length,
      {
        timeout: 5000,
      },
    );
    expect((await pageState(page)).x).toEqual(logged);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('replays a finished run directory with watch --web: every point, and worker strings shown as text, never HTML', async () => {
    const hostile = '<img src=x onerror="window.pwned=1">GPU';
    const { runDir, monitorToken, iterations } = await writeRunFixture({
      iterations: 40,
      device: hostile,
      sampleEvery: 10,
    });
    const stop = new AbortController();
    let loginUrl = '';
    const serving = serveRunDirDashboard(runDir, {
      address: parseWebAddress('127.0.0.1:0'),
      print: () => {},
      signal: stop.signal,
      ganDistVersion: 'test',
      onListening: (url) => {
        loginUrl = url;
      },
    });
    try {
      await waitFor(() => loginUrl !== '', 'the page to listen', 10_000);
      const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
      // The monitor secret, pasted into the login form of the 401 page: the view, without Stop.
      const refused = await page.goto(new URL(loginUrl).origin);
      expect(refused?.status()).toBe(401);
      await page.fill('input[name=token]', monitorToken);
      await page.click('button[type=submit]');
      await page.waitForFunction(() => (globalThis as unknown as PageGlobals).dashboard?.ready);
      const state = await pageState(page);
      expect(state.x).toEqual(iterations);
      expect(state.workers[0][1]).toBe(hostile);
      const injected = await page.evaluate(() => {
        const g = globalThis as unknown as PageGlobals;
        return {
          images: g.document.querySelectorAll('#workers img, #events img').length,
          pwned: g.pwned,
          event: Array.from(g.document.querySelectorAll('#events li')).some((li) =>
            li.textContent?.includes('<img src=x'),
          ),
        };
      });
      expect(injected).toEqual({ images: 0, pwned: undefined, event: true });
      expect(await page.isDisabled('#stop')).toBe(true);
      await page.close();
    } finally {
      stop.abort();
      await serving;
    }
  });
});
