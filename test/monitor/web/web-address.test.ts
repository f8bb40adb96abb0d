// The --web flag: [HOST:]PORT, loopback by default, errors naming the flag.

import { describe, expect, it } from 'vitest';
import { originOf, parseWebAddress } from '../../../monitor/web/web-address.ts';
import { expectGanDistError } from '../../support/expect-error.ts';

describe('parseWebAddress', () => {
  it('reads a bare port as loopback, and a host beyond it as not', () => {
    expect(parseWebAddress('8080')).toEqual({ host: '127.0.0.1', port: 8080, loopback: true });
    expect(parseWebAddress('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0, loopback: true });
    expect(parseWebAddress('[::1]:80')).toEqual({ host: '::1', port: 80, loopback: true });
    expect(parseWebAddress('0.0.0.0:8080')).toEqual({ host: '0.0.0.0', port: 8080, loopback: false });
  });

  it('refuses what is not [HOST:]PORT, naming the flag', () => {
    for (const bad of ['', 'web', '127.0.0.1:', ':80', '70000', 'host:8080:1'])
      expectGanDistError(() => parseWebAddress(bad), 'GAN_DIST_E_CONFIG', /--web: .* is not \[HOST:\]PORT/);
  });

  it('gives https origins beyond loopback and brackets IPv6', () => {
    expect(originOf({ host: '127.0.0.1', port: 1 }, false)).toBe('http://127.0.0.1:1');
    expect(originOf({ host: '::1', port: 2 }, true)).toBe('https://[::1]:2');
  });
});
