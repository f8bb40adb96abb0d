#!/usr/bin/env node
// The gan-dist executable: registers the TypeScript loader, then runs the CLI. There is no build step.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
