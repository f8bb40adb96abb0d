// Finding and starting the browser the dashboard's tests and benchmark drive: Debian's
// `chromium` package (apt-get install chromium), through playwright-core with that executable,
// never a downloaded browser.

import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/snap/bin/chromium'];

export const CHROMIUM_FIX = 'install it (Debian: apt-get install chromium) or set GAN_DIST_CHROMIUM to its executable';

/** GAN_DIST_CHROMIUM, else the first of Debian's (and Ubuntu's) paths that exists. */
export function chromiumPath(): string | undefined {
  const given = process.env.GAN_DIST_CHROMIUM;
  if (given) return existsSync(given) ? given : undefined;
  return CHROMIUM_CANDIDATES.find((p) => existsSync(p));
}

/** Headless Chromium; as root its sandbox cannot start, so it runs without (CI runs as root). */
export function launchChromium(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error(`no Chromium: ${CHROMIUM_FIX}`);
  const root = process.getuid?.() === 0;
  return chromium.launch({
    executablePath,
    headless: true,
    args: [...(root ? ['--no-sandbox'] : []), '--disable-gpu', '--disable-dev-shm-usage'],
  });
}
