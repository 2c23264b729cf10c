// The one place the SDK names the contract's imports, so the contract
// version (the `@0.5.0` of each specifier, which componentize-js matches
// against the WIT world the type is built for) is written once.
// Numbers cross as the bindings want them: u64 is a BigInt there, a
// Number everywhere else in the SDK.

import * as host from 'warden:resource/host@0.5.0';
import * as process from 'warden:resource/process@0.5.0';
import * as checkpoint from 'warden:resource/checkpoint@0.5.0';

export { checkpoint };

/** The contract version this SDK builds types against. */
export const CONTRACT_VERSION = '0.5.0';

/** Write to the agent's log: level is trace, debug, info, warn or error. */
export function log(level, message) {
  host.log(level, String(message));
}

/** Wall-clock milliseconds since the Unix epoch, as a Number. */
export function nowMs() {
  return Number(host.nowMs());
}

/** Sleep; counts against the deadline of the call that sleeps. */
export function sleepMs(ms) {
  host.sleepMs(BigInt(Math.max(0, Math.floor(ms))));
}

/**
 * Report progress of a long online or offline: each report extends the
 * pending deadline (up to the agent's cap). The milliseconds left.
 */
export function reportProgress(message) {
  return Number(host.reportProgress(String(message)));
}

/** Start the resource's one managed process; its pid. Throws the refusal. */
export function spawn(spec) {
  return process.spawn({
    program: spec.program,
    args: spec.args ?? [],
    env: spec.env ?? [],
    cwd: spec.cwd,
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; how the process ended. */
export function stop(graceMs) {
  return process.stop(BigInt(graceMs));
}

/** The managed process's state: `{tag: 'running', val: pid}`, `exited`, ... */
export function processState() {
  return process.state();
}
