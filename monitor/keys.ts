// Keys of the terminal UI, read in raw mode: raw mode turns Ctrl-C into a byte instead of SIGINT,
// so the UI decides what it means (train's TUI: Stop; a viewer: quit).

export type Key = 'quit' | 'interrupt' | 'detach' | 'redraw';

export interface TerminalIn {
  isTTY?: boolean;
  setRawMode?(raw: boolean): unknown;
  on(event: 'data', fn: (data: Buffer | string) => void): unknown;
  off(event: 'data', fn: (data: Buffer | string) => void): unknown;
  resume(): unknown;
  pause(): unknown;
}

/** The keys in one chunk of input: q quit, Ctrl-C interrupt, d detach, Ctrl-L redraw; others ignored. */
export function keysOf(data: Buffer | string): Key[] {
  const text = typeof data === 'string' ? data : data.toString('utf8');
  // An escape sequence (arrow keys, a mouse report) is one key that means nothing here.
  if (text.startsWith('\x1b') && text.length > 1) return [];
  const keys: Key[] = [];
  for (const ch of text) {
    if (ch === 'q' || ch === 'Q') keys.push('quit');
    else if (ch === '\x03') keys.push('interrupt');
    else if (ch === 'd' || ch === 'D') keys.push('detach');
    else if (ch === '\x0c') keys.push('redraw');
  }
  return keys;
}

/** Reads keys from `input` until the returned function is called, which restores the terminal mode. */
export function listenKeys(input: TerminalIn, onKey: (key: Key) => void): () => void {
  const raw = input.isTTY === true && typeof input.setRawMode === 'function';
  if (raw) input.setRawMode!(true);
  const onData = (data: Buffer | string) => {
    for (const k of keysOf(data)) onKey(k);
  };
  input.on('data', onData);
  input.resume();
  return () => {
    input.off('data', onData);
    if (raw) input.setRawMode!(false);
    input.pause();
  };
}
