import { describe, expect, it } from 'vitest';
import { Screen } from '../../monitor/screen.ts';
import { VirtualTerminal } from '../support/virtual-terminal.ts';

describe('screen', () => {
  it('takes the alternate screen, rewrites only changed lines, and gives the terminal back', () => {
    const term = new VirtualTerminal(20, 3);
    const screen = new Screen(term);
    screen.enter();
    expect(term.altScreen && term.cursorHidden).toBe(true);
    screen.draw(['one', 'two', 'three']);
    expect(term.lines.map((l) => l.trimEnd())).toEqual(['one', 'two', 'three']);
    term.written = '';
    screen.draw(['one', 'TWO', 'three']);
    expect(term.written).toBe('\x1b[2;1HTWO\x1b[0m\x1b[K');
    expect(term.lines[1].trimEnd()).toBe('TWO');
    screen.leave();
    expect(term.altScreen || term.cursorHidden).toBe(false);
  });

  it('redraws everything after a resize', () => {
    const term = new VirtualTerminal(20, 3);
    let resized = 0;
    const screen = new Screen(term, () => resized++);
    screen.enter();
    screen.draw(['a', 'b', 'c']);
    term.resize(30, 4);
    expect(resized).toBe(1);
    expect(screen.size).toEqual({ width: 30, height: 4 });
    screen.draw(['a', 'b', 'c', 'd']);
    expect(term.lines.map((l) => l.trimEnd())).toEqual(['a', 'b', 'c', 'd']);
    screen.leave();
  });
});
