// Dashboard logins: one-time links, the monitor and control secrets, cookies and CSRF tokens.

import { describe, expect, it } from 'vitest';
import { SessionStore, secretsEqual } from '../../../monitor/web/sessions.ts';

describe('SessionStore', () => {
  it('takes a one-time login token once, with the role it was minted for', () => {
    const store = new SessionStore({}, 'gan_dist_1');
    const token = store.mintLoginToken('control');
    expect(store.login(token)).toBe('control');
    expect(store.login(token)).toBeUndefined();
  });

  it('logs the control secret in to control, the monitor secret to monitor, and nothing else', () => {
    const store = new SessionStore({ monitor: 'm'.repeat(64), control: 'c'.repeat(64) }, 'gan_dist_1');
    expect(store.login('c'.repeat(64))).toBe('control');
    expect(store.login('m'.repeat(64))).toBe('monitor');
    expect(store.login('m'.repeat(63))).toBeUndefined();
    expect(store.login('')).toBeUndefined();
  });

  it('finds a session only by its own cookie name and id', () => {
    const store = new SessionStore({}, 'gan_dist_8080');
    const { session, cookie } = store.open('monitor', true);
    expect(cookie).toMatch(/; HttpOnly; SameSite=Strict; Path=\/; Secure$/);
    const pair = cookie.split(';')[0];
    expect(store.fromCookieHeader(`other=1; ${pair}`)).toBe(session);
    expect(store.fromCookieHeader(pair.replace('gan_dist_8080', 'gan_dist_8081'))).toBeUndefined();
    expect(store.fromCookieHeader(`gan_dist_8080=${'A'.repeat(43)}`)).toBeUndefined();
    expect(store.checkCsrf(session, session.csrf)).toBe(true);
    expect(store.checkCsrf(session, undefined)).toBe(false);
    store.logout(session);
    expect(store.fromCookieHeader(pair)).toBeUndefined();
  });

  it('compares secrets of different lengths without throwing', () => {
    expect(secretsEqual('abc', 'abc')).toBe(true);
    expect(secretsEqual('abc', 'abcd')).toBe(false);
  });
});
