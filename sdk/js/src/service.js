// The skeleton every service-managing type shares (the Rust SDK's
// service.rs): the program, its arguments (a template over the resource's
// properties), starting it and waiting until it answers with progress
// reports, stopping it with grace, killing it.

import { log, nowMs, sleepMs, reportProgress, spawn, stop, processState } from './contract.js';
import { property, refuse } from './properties.js';

/** The first pause between readiness checks, and the longest it doubles up to. */
const READY_FIRST_PAUSE_MS = 5;
const READY_MAX_PAUSE_MS = 100;

/** How long offline waits after SIGTERM before SIGKILL, by default. */
export const DEFAULT_STOP_GRACE_MS = 10000;

/**
 * The properties `Service.fromProps` reads, for a type's schema:
 * `program` (required, or defaulting to `defaults.program`; `''` makes it
 * optional: the type then watches a service started elsewhere), `args`
 * (a template, see `expand`), `startup-timeout-ms` (0 waits as long as it
 * takes) and `stop-grace-ms`.
 *
 * @param {{args?: string, program?: string, startupTimeoutMs?: number}} defaults
 */
export function serviceProperties(defaults = {}) {
  let program = property.string('program', 'Path of the program to run (allowed in the node configuration)');
  if (defaults.program === '') {
    program = property.string('program', 'Path of the program to run; empty: watch a service started elsewhere').default('');
  } else if (defaults.program !== undefined) {
    program = program.default(defaults.program);
  }
  return [
    program,
    property
      .string('args', 'Arguments; {name} is replaced by the property name\'s value; "..." or \'...\' keeps spaces in one argument')
      .default(defaults.args ?? ''),
    property
      .durationMs('startup-timeout-ms', 'How long online waits for the service to answer (0: as long as it takes)')
      .default(String(defaults.startupTimeoutMs ?? 30000)),
    property.durationMs('stop-grace-ms', 'How long offline waits after SIGTERM before SIGKILL').default(String(DEFAULT_STOP_GRACE_MS)),
  ];
}

/** The value of `name` in `[name, value]` pairs. */
function find(values, name) {
  const pair = values.find(([key]) => key === name);
  return pair ? pair[1] : undefined;
}

/**
 * Replace each `{name}` in `template` by the value of property `name`;
 * `{name.host}` and `{name.port}` take the parts of an address. Throws
 * an Error naming what is wrong.
 */
export function expand(template, values) {
  let out = '';
  let rest = template;
  for (;;) {
    const open = rest.indexOf('{');
    if (open < 0) break;
    out += rest.slice(0, open);
    const close = rest.indexOf('}', open);
    if (close < 0) throw new Error(`unclosed { in ${JSON.stringify(template)}`);
    const name = rest.slice(open + 1, close);
    const value = find(values, name);
    out += value !== undefined ? value : addressPart(name, values);
    rest = rest.slice(close + 1);
  }
  return out + rest;
}

/** `{name.host}` / `{name.port}` of `expand`. */
function addressPart(name, values) {
  const unknown = () => new Error(`{${name}} names no property`);
  const dot = name.lastIndexOf('.');
  if (dot < 0) throw unknown();
  const base = name.slice(0, dot);
  const part = name.slice(dot + 1);
  const address = find(values, base);
  if (address === undefined) throw unknown();
  const colon = address.lastIndexOf(':');
  if (colon < 0) throw new Error(`{${name}}: property ${JSON.stringify(base)} (${JSON.stringify(address)}) has no port`);
  if (part === 'host') return address.slice(0, colon).replace(/^\[/, '').replace(/\]$/, '');
  if (part === 'port') return address.slice(colon + 1);
  throw unknown();
}

/**
 * Split a command line into arguments: whitespace separates, `"..."` and
 * `'...'` keep what they enclose together (no escapes).
 */
export function splitArgs(line) {
  const args = [];
  let current = null;
  let quote = null;
  for (const c of line) {
    if (quote !== null) {
      if (c === quote) quote = null;
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      current ??= '';
    } else if (/\s/.test(c)) {
      if (current !== null) args.push(current);
      current = null;
    } else {
      current = (current ?? '') + c;
    }
  }
  if (quote !== null) throw new Error(`unclosed ${quote} in ${JSON.stringify(line)}`);
  if (current !== null) args.push(current);
  return args;
}

/** How a process state reads in a reason. */
export function describeState(state) {
  switch (state.tag) {
    case 'running':
      return `running as pid ${state.val}`;
    case 'exited':
      return `exited with status ${state.val}`;
    case 'killed-by-signal':
      return `killed by signal ${state.val}`;
    default:
      return 'not started';
  }
}

/** The text of whatever a check threw. */
export function reasonOf(thrown) {
  // An import's `err` arrives as an object carrying it in `payload`.
  if (thrown !== null && typeof thrown === 'object' && 'payload' in thrown) return String(thrown.payload);
  if (thrown instanceof Error) return thrown.message;
  return String(thrown);
}

/** One managed service, as the resource's properties describe it. */
export class Service {
  /**
   * @param {{program: string, args: string[]} | null} spawnSpec what to start; null watches a service started elsewhere
   * @param {number} startupTimeoutMs how long `start` waits; 0 as long as it takes
   * @param {number} stopGraceMs SIGTERM to SIGKILL
   */
  constructor(spawnSpec, startupTimeoutMs, stopGraceMs) {
    this.spawn = spawnSpec;
    this.startupTimeoutMs = startupTimeoutMs;
    this.stopGraceMs = stopGraceMs;
  }

  /**
   * Read the properties of `serviceProperties`: the program, the `args`
   * template expanded over every property (defaults included), the
   * timeouts. Throws a PropertyError naming the property.
   *
   * @param {import('./properties.js').Props} props
   */
  static fromProps(props) {
    const program = props.get('program');
    let spawnSpec = null;
    if (program !== '') {
      const every = [...props.values];
      for (const declared of props.schema) {
        if (declared.defaultValue !== undefined && find(every, declared.name) === undefined) {
          every.push([declared.name, declared.defaultValue]);
        }
      }
      let args;
      try {
        args = splitArgs(expand(props.get('args'), every));
      } catch (err) {
        throw refuse('args', reasonOf(err));
      }
      spawnSpec = { program, args };
    }
    return new Service(spawnSpec, props.integer('startup-timeout-ms'), props.integer('stop-grace-ms'));
  }

  /** The program's path, for reasons. */
  get program() {
    return this.spawn ? this.spawn.program : 'the service';
  }

  /**
   * Start the service unless it runs (online must be idempotent: a hot
   * swap's new instance finds it running), then wait until `ready()`
   * returns without throwing, reporting progress each second. Throws if
   * the process exits first or `startup-timeout-ms` passes. `ready` is
   * tried after 5 ms, then twice as long each time up to every 100 ms.
   *
   * @param {() => void} ready throws the reason it is not ready yet
   * @param {string[]} extra arguments after the template's
   */
  start(ready, extra = []) {
    if (this.spawn) {
      const state = processState();
      if (state.tag === 'running') {
        log('info', `${this.spawn.program} already runs as pid ${state.val}`);
      } else {
        const pid = spawn({ program: this.spawn.program, args: [...this.spawn.args, ...extra] });
        log('info', `started ${this.spawn.program} as pid ${pid}`);
      }
    }
    const started = nowMs();
    let lastReport = started;
    let pause = READY_FIRST_PAUSE_MS;
    for (;;) {
      let why;
      try {
        ready();
        return;
      } catch (err) {
        why = reasonOf(err);
      }
      this.running();
      const now = nowMs();
      if (this.startupTimeoutMs > 0 && now - started >= this.startupTimeoutMs) {
        throw new Error(`${this.program} did not answer within ${this.startupTimeoutMs} ms: ${why}`);
      }
      if (now - lastReport >= 1000) {
        reportProgress(`waiting for ${this.program}: ${why}`);
        lastReport = now;
      }
      sleepMs(pause);
      pause = Math.min(pause * 2, READY_MAX_PAUSE_MS);
    }
  }

  /** Returns while the process runs (always, when watching); else throws what became of it. */
  running() {
    if (!this.spawn) return;
    const state = processState();
    if (state.tag !== 'running') throw new Error(`${this.program} ${describeState(state)}`);
  }

  /** Stop cleanly: SIGTERM, SIGKILL after `stop-grace-ms`. How it ended. */
  stop() {
    if (!this.spawn) return { tag: 'not-started' };
    return stop(this.stopGraceMs);
  }

  /** The process's pid as text, for the `pid` control code; else throws its state. */
  pid() {
    const state = processState();
    if (state.tag === 'running') return String(state.val);
    throw new Error(describeState(state));
  }

  /** Kill at once, best effort; a failure is logged. */
  kill() {
    if (!this.spawn) return;
    try {
      stop(0);
    } catch (err) {
      log('warn', `terminate: ${reasonOf(err)}`);
    }
  }
}
