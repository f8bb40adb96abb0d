// Waiting in tests with a deadline: past it, a wait fails naming what it waited for, instead of
// hanging until vitest's own timeout, which says nothing about what never happened.

const timedOut = (what: string, timeoutMs: number) => new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);

/** Resolves once `predicate()` holds, checking every `everyMs`; rejects after `timeoutMs`. */
export async function waitFor(predicate: () => boolean, what: string, timeoutMs: number, everyMs = 20): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > end) throw timedOut(what, timeoutMs);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `promise`, or a rejection naming `what` if it has not settled within `timeoutMs`. */
export function withDeadline<T>(promise: Promise<T>, what: string, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut(what, timeoutMs)), timeoutMs);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/**
 * For a loop that does work between its checks: call the returned function each time round; it
 * throws once `timeoutMs` have passed since `deadline` was called.
 */
export function deadline(what: string, timeoutMs: number): () => void {
  const end = performance.now() + timeoutMs;
  return () => {
    if (performance.now() > end) throw timedOut(what, timeoutMs);
  };
}
