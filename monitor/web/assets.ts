// The page's files: a fixed table of what may be served (nothing is looked up by the request's
// path), read once at start and gzipped once. The page is plain HTML, CSS and JS modules beside
// this file; the chart library is uPlot from node_modules, never a CDN: runs are often offline.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
}

const here = join(import.meta.dirname, 'static');
const require = createRequire(import.meta.url);

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
};

/** URL path -> file. */
function table(): Record<string, string> {
  const uplot = (name: string) => require.resolve(`uplot/dist/${name}`);
  return {
    '/': join(here, 'index.html'),
    '/static/dashboard.css': join(here, 'dashboard.css'),
    '/static/dashboard.js': join(here, 'dashboard.js'),
    '/static/charts.js': join(here, 'charts.js'),
    '/static/panels.js': join(here, 'panels.js'),
    '/static/samples.js': join(here, 'samples.js'),
    '/static/uPlot.iife.min.js': uplot('uPlot.iife.min.js'),
    '/static/uPlot.min.css': uplot('uPlot.min.css'),
  };
}

let loaded: Map<string, Asset> | undefined;

/** Every asset by URL path (read on first use). */
export function assets(): Map<string, Asset> {
  if (loaded) return loaded;
  loaded = new Map();
  for (const [url, file] of Object.entries(table())) {
    const body = readFileSync(file);
    const ext = file.slice(file.lastIndexOf('.') + 1);
    loaded.set(url, { type: TYPES[ext] ?? 'application/octet-stream', body, gzip: gzipSync(body, { level: 9 }) });
  }
  return loaded;
}

/** The login page a request without a session gets with its 401: a form for a token, no run data. */
export function loginPage(message: string): string {
  const text = message.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>gan-dist: log in</title>
<style>body{font:16px system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}
input{font:inherit;width:100%;box-sizing:border-box;padding:.5rem;margin:.5rem 0}button{font:inherit;padding:.4rem 1rem}</style>
</head><body><h1>gan-dist dashboard</h1><p>${text}</p>
<form method="post" action="/login"><label>Token (the <code>token=</code> line of the run's monitor.token or control.token)
<input name="token" type="password" autocomplete="off" required></label><button type="submit">Log in</button></form>
</body></html>
`;
}
