// Health checks over the contract's `probe` import (0.4.0; `httpCheck` 0.5.0): the agent
// connects on the type's behalf, since a JavaScript component has no
// socket API. The grants are the sockets' grants: only the addresses named
// by the resource's `address` properties. Each helper returns what the
// probe answered, or throws an Error whose message says what failed, ready
// to be a check's reason.

import * as probe from 'warden:resource/probe@0.5.0';

/** The text of a probe-error (`{tag: 'denied' | ..., val: text}`). */
function probeFailure(thrown) {
  const error = thrown !== null && typeof thrown === 'object' && 'payload' in thrown ? thrown.payload : thrown;
  if (error !== null && typeof error === 'object' && 'tag' in error) {
    return new Error(`${error.tag}: ${error.val}`);
  }
  return thrown instanceof Error ? thrown : new Error(String(thrown));
}

function timeout(ms) {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new TypeError(`a probe's timeout must be whole milliseconds, got ${ms}`);
  return BigInt(ms);
}

/** Open a TCP connection to `address` and close it; the milliseconds it took. */
export function connect(address, timeoutMs) {
  try {
    return Number(probe.connect(address, timeout(timeoutMs)));
  } catch (err) {
    throw probeFailure(err);
  }
}

/**
 * Connect, send `send` (if not null) and CRLF, read one line and require
 * that it starts with `expectPrefix`; the line. Redis: `PING`, `+PONG`.
 */
export function exchangeLine(address, send, expectPrefix, timeoutMs) {
  try {
    return probe.exchangeLine(address, send ?? undefined, expectPrefix, timeout(timeoutMs));
  } catch (err) {
    throw probeFailure(err);
  }
}

/** An HTTP/1.1 GET of `path` that must answer `expectStatus`; the status. */
export function httpGet(address, path, expectStatus, timeoutMs) {
  try {
    return probe.httpGet(address, path, expectStatus, timeout(timeoutMs));
  } catch (err) {
    throw probeFailure(err);
  }
}

/**
 * An HTTP check (contract 0.5.0): a GET of `path` from `address` whose
 * status must be `expect` (a number, or a class such as `'2xx'`, the
 * default); the status. `timeoutMs` is required. `hostHeader` is sent as
 * `Host` when given; with `reuseConnection` the agent keeps the
 * connection for the next check (a kept connection does not notice a
 * listener that stopped accepting).
 */
export function httpCheck(address, path, { expect = '2xx', hostHeader, reuseConnection = false, timeoutMs } = {}) {
  let match;
  if (typeof expect === 'string' && /^[1-5]xx$/.test(expect)) {
    match = { tag: 'class', val: Number(expect[0]) };
  } else if (Number.isInteger(expect)) {
    match = { tag: 'exact', val: expect };
  } else {
    throw new TypeError(`an HTTP check expects a status or a class such as '2xx', got ${expect}`);
  }
  try {
    return probe.httpCheck({
      address,
      path,
      hostHeader: hostHeader ?? undefined,
      expect: match,
      reuseConnection: Boolean(reuseConnection),
      timeoutMs: timeout(timeoutMs),
    });
  } catch (err) {
    throw probeFailure(err);
  }
}
