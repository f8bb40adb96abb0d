// Who may see the dashboard, as Jupyter does it: the printed URL carries a one-time login token,
// exchanged for a session cookie (HttpOnly: scripts cannot read it; SameSite=Strict: no other
// site's page sends it), after which the page's URL is clean. The run's monitor secret logs in
// to the view, its control secret to the view and Stop; each session has its own CSRF token,
// which a Stop must send back in a header. Every secret is compared in constant time.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export type WebRole = 'monitor' | 'control';

/** The long-lived secrets that log in (the run's monitor.token and control.token); either may be absent. */
export interface WebCredentials {
  monitor?: string;
  control?: string;
}

export interface Session {
  id: string;
  role: WebRole;
  csrf: string;
}

/** Sessions held at most: the oldest goes beyond it (each login makes one). */
const MAX_SESSIONS = 1024;
/** One-time login tokens outstanding at most. */
const MAX_LOGIN_TOKENS = 64;

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Constant-time equality of two secrets of any length (their SHA-256 digests are compared). */
export function secretsEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  private readonly loginTokens = new Map<string, WebRole>();

  /** `cookieName` should name the port: cookies are shared by every port of a host. */
  constructor(
    private readonly credentials: WebCredentials,
    readonly cookieName: string,
  ) {}

  /** A login token good for one exchange, granting `role`. */
  mintLoginToken(role: WebRole): string {
    const token = randomBytes(32).toString('base64url');
    this.loginTokens.set(token, role);
    if (this.loginTokens.size > MAX_LOGIN_TOKENS) this.loginTokens.delete(this.loginTokens.keys().next().value!);
    return token;
  }

  /** The role `secret` grants: a one-time token (used up now), the control secret, or the monitor secret. */
  login(secret: string): WebRole | undefined {
    let role: WebRole | undefined;
    // Every candidate is compared, whichever matches, so the time taken says nothing of which.
    for (const [token, r] of this.loginTokens) {
      if (secretsEqual(token, secret)) {
        role = r;
        this.loginTokens.delete(token);
      }
    }
    const { control, monitor } = this.credentials;
    if (control !== undefined && secretsEqual(control, secret)) role = 'control';
    if (monitor !== undefined && secretsEqual(monitor, secret)) role ??= 'monitor';
    return role;
  }

  /** A new session for `role`, and its Set-Cookie header value. */
  open(role: WebRole, secure: boolean): { session: Session; cookie: string } {
    const session = { id: randomBytes(32).toString('base64url'), role, csrf: randomBytes(32).toString('base64url') };
    this.sessions.set(session.id, session);
    if (this.sessions.size > MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const attrs = ['HttpOnly', 'SameSite=Strict', 'Path=/', ...(secure ? ['Secure'] : [])];
    return { session, cookie: `${this.cookieName}=${session.id}; ${attrs.join('; ')}` };
  }

  /** The session a request's Cookie header names, if it is one of ours. */
  fromCookieHeader(header: string | undefined): Session | undefined {
    if (!header) return undefined;
    for (const part of header.split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0 || part.slice(0, eq).trim() !== this.cookieName) continue;
      const id = part.slice(eq + 1).trim();
      // Ids are 256 random bits: a hash lookup's timing tells a guesser nothing it can use.
      if (!/^[A-Za-z0-9_-]{43}$/.test(id)) continue;
      const session = this.sessions.get(id);
      if (session) return session;
    }
    return undefined;
  }

  /** Whether `token` is the session's CSRF token. */
  checkCsrf(session: Session, token: string | undefined): boolean {
    return token !== undefined && secretsEqual(session.csrf, token);
  }

  /** The header that ends the session in the browser. */
  logout(session: Session): string {
    this.sessions.delete(session.id);
    return `${this.cookieName}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
  }
}
