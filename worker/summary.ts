// The layer table of G and D, as MATLAB's analyzeNetwork shows it: name, type, activations, learnables.

import type { ModelConfig } from '../protocol/config.ts';
import {
  activationShapes,
  layersOf,
  paramSpecs,
  sizeOf,
  type Layer,
  type Net,
} from '../protocol/model/architecture.ts';

export interface LayerRow {
  name: string;
  type: string;
  activations: number[];
  learnables: number;
}

export interface NetworkSummary {
  net: Net;
  title: string;
  layers: LayerRow[];
  learnables: number;
  input: number[];
  output: number[];
}

const typeNames: Record<Layer['kind'], string> = {
  input: 'Input',
  project: 'Project and reshape (fully connected)',
  tconv: 'Transposed convolution',
  conv: 'Convolution',
  bn: 'Batch normalization',
  relu: 'ReLU',
  leakyrelu: 'Leaky ReLU',
  tanh: 'Tanh',
  sigmoid: 'Sigmoid',
  dropout: 'Dropout',
};

function describeLayer(l: Layer): string {
  switch (l.kind) {
    case 'conv':
    case 'tconv':
      return `${typeNames[l.kind]} ${l.k}x${l.k}x${l.outC}, stride ${l.stride}, ${l.pad === 'same' ? "'same'" : l.kind === 'tconv' ? 'no cropping' : 'no padding'}`;
    case 'leakyrelu':
      return `${typeNames[l.kind]} (scale ${l.alpha})`;
    case 'dropout':
      return `${typeNames[l.kind]} ${l.rate} (training only)`;
    default:
      return typeNames[l.kind];
  }
}

export function summarize(net: Net, cfg: ModelConfig): NetworkSummary {
  const layers = layersOf(net, cfg);
  const shapes = activationShapes(layers);
  const specs = paramSpecs(net, cfg).filter((s) => s.role === 'learnable');
  const rows = layers.map((l, i) => ({
    name: l.name,
    type: describeLayer(l),
    activations: shapes[i],
    learnables: specs.filter((s) => s.layer === l.name).reduce((n, s) => n + sizeOf(s.shape), 0),
  }));
  return {
    net,
    title: net === 'G' ? 'Generator' : 'Discriminator',
    layers: rows,
    learnables: rows.reduce((n, r) => n + r.learnables, 0),
    input: shapes[0],
    output: shapes.at(-1)!,
  };
}

/** A plain-text table for people. */
export function formatSummary(s: NetworkSummary): string {
  const head = ['Layer', 'Type', 'Activations', 'Learnables'];
  const body = s.layers.map((r) => [
    r.name,
    r.type,
    r.activations.join('x'),
    r.learnables ? r.learnables.toLocaleString('en-US') : '-',
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  const line = (cells: string[]) =>
    cells.map((x, c) => (c === 3 ? x.padStart(widths[c]) : x.padEnd(widths[c]))).join('  ');
  return [
    `${s.title}: ${s.input.join('x')} -> ${s.output.join('x')}, ${s.learnables.toLocaleString('en-US')} learnables`,
    line(head),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...body.map(line),
  ].join('\n');
}
