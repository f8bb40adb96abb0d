// Where the repository and its CLI are, for tests that spawn processes or read files by path.

import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(repoRoot, 'cmd/gan-dist.mjs');
