import { describe, expect, it } from 'vitest';
import {
  createClientHandshake,
  createServerHandshake,
  type ClientHandshake,
  type HandshakeStep,
  type ServerHandshake,
} from '../../protocol/wire/handshake.ts';
import { hmacProof, newNonce, newRoleTokens, newToken, type RoleTokens } from '../../protocol/wire/auth.ts';
import { GanDistError } from '../../protocol/errors.ts';
import {
  PRE_AUTH_LIMITS,
  PROTOCOL_VERSION,
  decodeMessage,
  encodeMessage,
  paramTableHash,
  type ChallengeMessage,
  type HelloMessage,
  type Message,
  type ProofMessage,
  type Role,
} from '../../protocol/wire/protocol.ts';

const TOKEN = newToken();
const TABLE_HASH = paramTableHash([{ name: 'G/proj/w', shape: [100, 8192] }]);
const WELCOME = {
  runId: 'run-1',
  workerId: 2,
  modelConfig: { latent: 100, filters: 64, imageSize: 64 as const, batchSize: 128 },
  seed: 7,
};

/** Every message crosses a real encode/decode under the pre-authentication limits. */
function wire(msg: Message): Message {
  return decodeMessage(encodeMessage(msg), PRE_AUTH_LIMITS);
}

function server(
  token: string | RoleTokens = TOKEN,
  extra: { roles?: readonly Role[]; nonce?: string } = {},
): ServerHandshake {
  return createServerHandshake({ token, welcome: WELCOME, paramTableHash: TABLE_HASH, ...extra });
}

function client(token = TOKEN, role: Role = 'worker', nonce?: string): ClientHandshake {
  return createClientHandshake({ token, role, ganDistVersion: '0.1.0', backend: 'wasm', device: 'cpu', nonce });
}

/** A hello as a peer of this version sends it, before any check of the challenge. */
function helloAs(role: Role): HelloMessage {
  return {
    type: 'hello',
    protocolVersion: PROTOCOL_VERSION,
    ganDistVersion: '0.1.0',
    backend: 'wasm',
    device: 'cpu',
    nonce: newNonce(),
    role,
  };
}

function sent<D>(step: HandshakeStep<D>): Message {
  expect(step.error).toBeUndefined();
  expect(step.send).toBeDefined();
  return wire(step.send!);
}

function expectRejected<D>(step: HandshakeStep<D>, code: string, reason: RegExp): void {
  expect(step.done).toBeUndefined();
  expect(step.error).toBeInstanceOf(GanDistError);
  expect(step.error!.code).toBe(code);
  expect(step.error!.message).toMatch(reason);
  const reject = wire(step.send!);
  expect(reject).toEqual({ type: 'reject', code, reason: step.error!.message });
}

describe('handshake', () => {
  /** Runs a worker (or monitor) and a coordinator against each other over encoded frames. */
  function run(c: ClientHandshake, s: ServerHandshake, hash = TABLE_HASH) {
    const hello = sent(c.start());
    const challenge = sent(s.onMessage(hello));
    const proof = sent(c.onMessage(challenge));
    const toWelcome = s.onMessage(proof);
    const welcome = sent(toWelcome);
    const atWelcome = c.onMessage(welcome);
    return { hello, challenge, proof, toWelcome, welcome, atWelcome, hash };
  }

  it('lets a worker with the right token in, both sides proving themselves', () => {
    const c = client();
    const s = server();
    const { atWelcome, welcome } = run(c, s);
    expect(welcome).toEqual({ type: 'welcome', ...WELCOME });
    expect(atWelcome.welcome).toEqual(welcome);
    expect(atWelcome.done).toBeUndefined();
    expect(c.state).toBe('building');
    const ready = c.ready(TABLE_HASH);
    expect(ready.done).toEqual({ welcome });
    const last = s.onMessage(wire(ready.send!));
    expect(last.error).toBeUndefined();
    expect(last.done).toMatchObject({ role: 'worker', welcome });
    expect([c.state, s.state]).toEqual(['done', 'done']);
  });

  it("tells the coordinator the worker's launcher rank in the hello, and nothing when it has none", () => {
    const c = createClientHandshake({
      token: TOKEN,
      role: 'worker',
      ganDistVersion: '0.1.0',
      backend: 'wasm',
      device: 'cpu',
      rank: 3,
    });
    const s = server();
    const { hello } = run(c, s);
    expect(hello).toMatchObject({ type: 'hello', rank: 3 });
    expect(s.onMessage(wire(c.ready(TABLE_HASH).send!)).done?.hello.rank).toBe(3);
    expect(sent(client().start())).not.toHaveProperty('rank');
  });

  it('lets a monitor in at welcome, without a parameter table', () => {
    const c = client(TOKEN, 'monitor');
    const s = server();
    const { atWelcome, toWelcome } = run(c, s);
    expect(toWelcome.done?.role).toBe('monitor');
    expect(atWelcome.done?.welcome.runId).toBe('run-1');
    expect([c.state, s.state]).toEqual(['done', 'done']);
  });

  it('turns a worker with the wrong token away at the worker, which sees the coordinator cannot prove the token', () => {
    const c = client(newToken());
    const s = server();
    const challenge = sent(s.onMessage(sent(c.start())));
    const step = c.onMessage(challenge);
    expectRejected(step, 'GAN_DIST_E_AUTH', /the coordinator's proof does not match this token/);
    // The coordinator hears why and closes too.
    const heard = s.onMessage(wire(step.send!));
    expect(heard.error?.message).toMatch(/the peer gave up the handshake: the coordinator's proof does not match/);
  });

  it('turns a worker with the wrong token away at the coordinator, even if it skips checking the challenge', () => {
    const s = server();
    const hello = helloAs('worker');
    const challenge = sent(s.onMessage(hello)) as ChallengeMessage;
    const forged: ProofMessage = {
      type: 'proof',
      proof: hmacProof(newToken(), 'worker', hello.nonce, challenge.nonce),
    };
    expectRejected(
      s.onMessage(forged),
      'GAN_DIST_E_AUTH',
      /the worker's proof does not match this run's token: give it the run's token file/,
    );
    expect(s.state).toBe('failed');
  });

  it('rejects a proof replayed from an earlier handshake', () => {
    const nonce = newNonce();
    const first = run(client(TOKEN, 'worker', nonce), server());
    // An eavesdropper replays the same hello and proof; the coordinator drew a new nonce.
    const s = server();
    sent(s.onMessage(first.hello));
    expectRejected(s.onMessage(first.proof), 'GAN_DIST_E_AUTH', /proof does not match/);
  });

  it("rejects the coordinator's own proof reflected back as the worker's", () => {
    const s = server();
    const hello = helloAs('worker');
    const challenge = sent(s.onMessage(hello)) as ChallengeMessage;
    expectRejected(s.onMessage({ type: 'proof', proof: challenge.proof }), 'GAN_DIST_E_AUTH', /proof does not match/);
  });

  it('names both protocol versions when a worker of another version says hello', () => {
    const s = server();
    const hello = wire({ ...helloAs('worker'), protocolVersion: PROTOCOL_VERSION + 1, ganDistVersion: '0.9.0' });
    expectRejected(
      s.onMessage(hello),
      'GAN_DIST_E_PROTOCOL',
      new RegExp(
        `speaks protocol version ${PROTOCOL_VERSION + 1} \\(gan-dist 0\\.9\\.0\\); this coordinator speaks version ${PROTOCOL_VERSION}`,
      ),
    );
  });

  it('names both parameter table hashes when the worker built a different model', () => {
    const c = client();
    const s = server();
    run(c, s);
    const other = paramTableHash([{ name: 'G/proj/w', shape: [100, 4096] }]);
    expectRejected(
      s.onMessage(wire(c.ready(other).send!)),
      'GAN_DIST_E_PROTOCOL',
      new RegExp(`built parameter table ${other}, the coordinator has ${TABLE_HASH}`),
    );
  });

  it('rejects a message out of order and anything after the handshake failed', () => {
    const s = server();
    expectRejected(
      s.onMessage({ type: 'heartbeat', t: 1 }),
      'GAN_DIST_E_PROTOCOL',
      /expected 'hello' during the handshake, got 'heartbeat'/,
    );
    expect(s.onMessage({ type: 'heartbeat', t: 2 }).error?.message).toMatch(/already failed/);
    const c = client();
    c.start();
    expectRejected(
      c.onMessage({ type: 'welcome', ...WELCOME }),
      'GAN_DIST_E_PROTOCOL',
      /expected 'challenge' during the handshake, got 'welcome'/,
    );
  });

  it('refuses a role the coordinator does not accept', () => {
    const s = server(TOKEN, { roles: ['worker'] });
    const hello = sent(client(TOKEN, 'monitor').start());
    expectRejected(s.onMessage(hello), 'GAN_DIST_E_AUTH', /does not accept a monitor/);
  });

  it("reports the coordinator's reject reason and code to the worker", () => {
    const c = client();
    c.start();
    const step = c.onMessage(wire({ type: 'reject', reason: 'this run is full', code: 'GAN_DIST_E_WORKER' }));
    expect(step.error?.code).toBe('GAN_DIST_E_WORKER');
    expect(step.error?.message).toBe('the coordinator turned this worker away: this run is full');
    expect(c.state).toBe('failed');
  });
});

describe('handshake with the run roles', () => {
  const TOKENS = newRoleTokens();
  /** A peer that skips checking the challenge and proves `token` anyway: what the coordinator alone decides. */
  function forcedProof(role: Role, token: string) {
    const s = server(TOKENS);
    const hello = helloAs(role);
    const challenge = sent(s.onMessage(hello)) as ChallengeMessage;
    return s.onMessage({ type: 'proof', proof: hmacProof(token, 'worker', hello.nonce, challenge.nonce) });
  }

  /** Runs a client with `token` in `role` against a coordinator of the run's three secrets. */
  function handshake(token: string, role: Role) {
    const c = client(token, role);
    const s = server(TOKENS);
    const challenge = sent(s.onMessage(sent(c.start())));
    const atChallenge = c.onMessage(challenge);
    if (atChallenge.error) return { client: atChallenge };
    const atProof = s.onMessage(sent(atChallenge));
    if (role === 'worker' && !atProof.error) {
      c.onMessage(sent(atProof));
      return { server: s.onMessage(wire(c.ready(TABLE_HASH).send!)) };
    }
    return { server: atProof };
  }

  it('lets the worker token join, and says which credential each monitor proved', () => {
    expect(handshake(TOKENS.worker, 'worker').server?.done?.credential).toBe('worker');
    expect(handshake(TOKENS.monitor, 'monitor').server?.done).toMatchObject({ role: 'monitor', credential: 'monitor' });
    expect(handshake(TOKENS.control, 'monitor').server?.done).toMatchObject({ role: 'monitor', credential: 'control' });
  });

  it('keeps a monitor or control token from joining as a worker', () => {
    for (const token of [TOKENS.monitor, TOKENS.control]) {
      const { client: step } = handshake(token, 'worker');
      expectRejected(
        step!,
        'GAN_DIST_E_AUTH',
        /coordinator's proof does not match this token.*workers join with worker\.token/,
      );
      expectRejected(
        forcedProof('worker', token),
        'GAN_DIST_E_AUTH',
        /the worker's proof does not match this run's worker token: .*a monitor or control token cannot join/,
      );
    }
  });

  it('keeps the worker token from watching', () => {
    const { client: step } = handshake(TOKENS.worker, 'monitor');
    expectRejected(
      step!,
      'GAN_DIST_E_AUTH',
      /does not let a monitor in \(watch with monitor\.token or control\.token\)/,
    );
    expectRejected(
      forcedProof('monitor', TOKENS.worker),
      'GAN_DIST_E_AUTH',
      /the monitor's proof does not match this run's monitor or control token: .*a worker token cannot watch/,
    );
  });

  it("gives an older run's one token every role, as the 'run' credential", () => {
    const w = client(TOKEN, 'worker');
    const sw = server(TOKEN);
    const proof = sent(w.onMessage(sent(sw.onMessage(sent(w.start())))));
    w.onMessage(sent(sw.onMessage(proof)));
    expect(sw.onMessage(wire(w.ready(TABLE_HASH).send!)).done?.credential).toBe('run');
    const m = client(TOKEN, 'monitor');
    const sm = server(TOKEN);
    const mproof = sent(m.onMessage(sent(sm.onMessage(sent(m.start())))));
    expect(sm.onMessage(mproof).done?.credential).toBe('run');
  });
});
