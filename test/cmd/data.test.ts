import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerDataCommands } from '../../cmd/data.ts';
import { type ArchiveServer, makeArchive, serveFile, sha256, startArchiveServer } from '../data/archive-server.ts';

let work: string;

/** Runs `gan-dist data ...` in-process and returns what it printed on stdout. */
async function run(...args: string[]): Promise<string> {
  const program = new Command('gan-dist').exitOverride();
  registerDataCommands(program);
  program.commands.forEach(function quiet(c: Command): void {
    c.exitOverride().configureOutput({ writeErr: () => {} });
    c.commands.forEach(quiet);
  });
  const out: string[] = [];
  const stdout = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => out.push(String(chunk)) > 0);
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    await program.parseAsync(['node', 'gan-dist', ...args]);
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
  return out.join('');
}

beforeAll(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'gan-dist-cmd-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('gan-dist data synth', () => {
  it('writes the asked number of PNG files and reports them as JSON', async () => {
    const out = path.join(work, 'synth');
    const printed = JSON.parse(
      await run('data', 'synth', '--out', out, '--count', '4', '--size', '16', '--seed', '3', '--json'),
    );
    expect(printed).toMatchObject({ dir: out, count: 4, size: 16, seed: 3 });
    expect(await readdir(out)).toHaveLength(4);
  });

  it('rejects a count that is not a positive integer, naming the option', async () => {
    const err = await run('data', 'synth', '--out', path.join(work, 'x'), '--count', 'many').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommanderError);
    expect((err as CommanderError).message).toMatch(/--count <n>.*must be an integer >= 1/);
  });
});

describe('gan-dist data check', () => {
  it('prints counts, skipped files with reasons and decode throughput', async () => {
    const dir = path.join(work, 'check');
    await run('data', 'synth', '--out', path.join(dir, 'roses'), '--count', '3', '--size', '16');
    await writeFile(path.join(dir, 'roses', 'broken.jpg'), 'not a jpeg');
    const human = await run('data', 'check', dir);
    expect(human).toMatch(
      new RegExp(`^${dir}: 3 images in 1 classes \\(roses 3\\)\nskipped 1:\n  roses/broken.jpg: not an image`),
    );
    expect(human).toMatch(/decode: \d+ images\/s to 64x64/);
    const report = JSON.parse(await run('data', 'check', dir, '--json', '--image-size', '32'));
    expect(report).toMatchObject({ images: 3, classes: { roses: 3 }, decode: { imageSize: 32 } });
    expect(report.skipped.files).toEqual([{ rel: 'roses/broken.jpg', kind: 'not-image', reason: expect.any(String) }]);
    expect(report.decode.imagesPerSecond).toBeGreaterThan(0);
  });

  it('fails with GAN_DIST_E_DATA and the fix on a folder with no decodable image, after printing its report', async () => {
    const dir = path.join(work, 'no-images');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'LICENSE.txt'), 'text');
    await writeFile(path.join(dir, 'broken.png'), 'not a png');
    const failure = run('data', 'check', dir, '--json');
    await expect(failure).rejects.toMatchObject({
      code: 'GAN_DIST_E_DATA',
      message: expect.stringMatching(/no decodable image in .*no-images: 1 image files skipped, 1 other files ignored/),
    });
    await expect(failure).rejects.toHaveProperty('hint', expect.stringMatching(/gan-dist data fetch/));
  });
});

describe('gan-dist data fetch', () => {
  let server: ArchiveServer;
  let archive: Buffer;
  let url: string;
  const trusted = https.globalAgent.options.ca;

  beforeAll(async () => {
    archive = await makeArchive(work, 'flower_photos');
    server = await startArchiveServer();
    server.routes.set('/f.tgz', serveFile(archive));
    url = `${server.base}/f.tgz`;
    // The command takes no certificate option: the test's self-signed one is trusted through the
    // default agent that every https request of this process uses.
    https.globalAgent.options.ca = server.ca;
  });

  afterAll(async () => {
    https.globalAgent.options.ca = trusted;
    await server.close();
  });

  it('fetches into --dir from an https --url checked against --sha256, then says there is nothing to do', async () => {
    const dir = path.join(work, 'fetched');
    expect(await run('data', 'fetch', 'flowers', '--dir', dir, '--url', url, '--sha256', sha256(archive))).toMatch(
      /^flower_photos is at .*flower_photos \(\d+(\.\d)? (B|KB) downloaded\); train with --data .*flower_photos\n$/,
    );
    expect(JSON.parse(await run('data', 'fetch', 'flowers', '--dir', dir, '--url', url, '--json'))).toEqual({
      dir: path.join(dir, 'flower_photos'),
      fetched: false,
      bytes: 0,
    });
  });

  it('refuses an archive that is not the one --sha256 names, naming both hashes, with nothing extracted', async () => {
    const dir = path.join(work, 'mismatch');
    const wanted = sha256('a different archive');
    await expect(run('data', 'fetch', 'flowers', '--dir', dir, '--url', url, '--sha256', wanted)).rejects.toMatchObject(
      {
        code: 'GAN_DIST_E_NETWORK',
        message: expect.stringContaining(`has SHA-256 ${sha256(archive)}, expected ${wanted}`),
      },
    );
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a plain http --url', async () => {
    await expect(
      run('data', 'fetch', 'flowers', '--dir', path.join(work, 'plain'), '--url', 'http://127.0.0.1:1/f.tgz'),
    ).rejects.toMatchObject({ code: 'GAN_DIST_E_CONFIG', message: expect.stringMatching(/^--url http:.*https:\/\//) });
  });

  it('knows only the flowers dataset', async () => {
    const err = await run('data', 'fetch', 'cats').catch((e: unknown) => e);
    expect((err as CommanderError).message).toMatch(/Allowed choices are flowers/);
  });
});
