import { describe, expect, it } from 'vitest';
import {
  detectColorMode,
  fitWidth,
  paint,
  rgbTo256,
  sanitize,
  stripAnsi,
  truncate,
  visibleWidth,
  wantsColor,
} from '../../monitor/ansi.ts';

describe('terminal text', () => {
  it('picks truecolor only where COLORTERM says so', () => {
    expect(detectColorMode({ COLORTERM: 'truecolor' })).toBe('truecolor');
    expect(detectColorMode({ COLORTERM: '24bit' })).toBe('truecolor');
    expect(detectColorMode({})).toBe('256');
  });

  it('colours plain output on a TTY, never with NO_COLOR, always with FORCE_COLOR', () => {
    expect(wantsColor({ isTTY: true }, {})).toBe(true);
    expect(wantsColor({ isTTY: false }, {})).toBe(false);
    expect(wantsColor({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(wantsColor({ isTTY: false }, { FORCE_COLOR: '1' })).toBe(true);
  });

  it('maps colours to the nearest of the 256-colour palette', () => {
    expect(rgbTo256([255, 0, 0])).toBe(196);
    expect(rgbTo256([0, 0, 0])).toBe(16);
    expect(rgbTo256([255, 255, 255])).toBe(231);
    expect(rgbTo256([128, 128, 128])).toBe(244);
  });

  it('measures columns without escape sequences, wide characters as two', () => {
    expect(visibleWidth(paint('abc', [1, 2, 3], 'truecolor'))).toBe(3);
    expect(visibleWidth('日本')).toBe(4);
    expect(visibleWidth('⣿▀━')).toBe(3);
  });

  it('cuts coloured text to a width and closes its colour', () => {
    const s = paint('abcdef', [255, 0, 0], '256');
    const cut = truncate(s, 3);
    expect(stripAnsi(cut)).toBe('abc');
    expect(cut.endsWith('\x1b[0m')).toBe(true);
    expect(stripAnsi(truncate('abcdef', 4, true))).toBe('abc…');
    expect(fitWidth('ab', 4)).toBe('ab  ');
    expect(fitWidth('ab', 4, 'right')).toBe('  ab');
    expect(visibleWidth(fitWidth('日本語です', 5))).toBeLessThanOrEqual(5);
  });

  it('defuses control characters from a log (a worker chooses its own device name)', () => {
    const evil = 'GPU\x1b]0;pwned\x07\x1b[2J\r';
    const clean = sanitize(evil);
    expect(clean).not.toMatch(/[\x00-\x1f\x7f-\x9f]/);
    expect(clean).toContain('GPU');
  });
});
