import { describe, expect, it } from 'vitest';
import { PeerStrikes } from '../../coordinator/strikes.ts';

function peer(id: number) {
  const closed: string[] = [];
  return { id, closed, close: (reason: string) => void closed.push(reason) };
}

describe('strikes against stale and unsolicited frames', () => {
  it('drops a peer past the bound within the window, naming the count and the last frame', () => {
    const strikes = new PeerStrikes({ max: 3, windowMs: 1000 }, () => 0);
    const p = peer(1);
    for (let i = 0; i < 3; i++) expect(strikes.strike(p, 'a stale result')).toBe(false);
    expect(strikes.strike(p, 'a sample nobody asked it for')).toBe(true);
    expect(p.closed).toEqual([
      'sent 4 stale or unsolicited frames within 1 s (the last: a sample nobody asked it for)',
    ]);
  });

  it('forgets strikes older than the window, and counts each peer apart', () => {
    let now = 0;
    const strikes = new PeerStrikes({ max: 2, windowMs: 1000 }, () => now);
    const a = peer(1);
    const b = peer(2);
    strikes.strike(a, 'x');
    strikes.strike(a, 'x');
    now = 1500;
    expect(strikes.strike(a, 'x')).toBe(false);
    expect(strikes.strike(b, 'x')).toBe(false);
    expect(strikes.strike(a, 'x')).toBe(false);
    expect(strikes.strike(a, 'x')).toBe(true);
    expect(b.closed).toEqual([]);
  });
});
