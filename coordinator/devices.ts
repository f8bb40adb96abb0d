// The device each worker computes on, as its hello says ("GPU llvmpipe (...)", "GPU 0 (CUDA)",
// "CPU (wasm, ...)"). Two workers of one machine on the same GPU share it and halve each other's
// speed, which is nearly always a placement mistake (a GPU not pinned): worth a warning.

import type { Peer } from './server.ts';

/** The host part of "127.0.0.1:5000" or "[::1]:5000". */
export function hostOf(address: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(address) ?? /^(.*):\d+$/.exec(address);
  return m ? m[1] : address;
}

/** A live worker on the same machine that reported the same GPU as `peer`, if any. */
export function sharedGpu(peer: Peer, live: Iterable<Peer>): Peer | undefined {
  const device = peer.hello.device;
  if (!/^GPU\b/.test(device)) return undefined;
  for (const other of live) {
    if (other.id !== peer.id && other.hello.device === device && hostOf(other.address) === hostOf(peer.address))
      return other;
  }
  return undefined;
}
