// The contract as one definition with defaults (the Rust SDK's
// resource.rs and service.rs's Managed): a type declares what is its own
// (name, properties, online, is-alive) and inherits the rest. `exportType`
// turns a definition into the object componentize-js exports as the
// contract's `resource-type` interface; `exportService` is the shorter way
// for the usual type, one managed program and a check.
//
// Whatever a type's code throws is caught here and answered as the
// contract asks: a refused property as a property-error, a failed online,
// offline or control as its error text, a failed check as `failed`. So a
// bug in a type is reported with its message and the next call runs; it
// never traps the instance.

import { log, stop } from './contract.js';
import { Props, PropertyError } from './properties.js';
import { DEFAULT_STOP_GRACE_MS, Service, reasonOf, serviceProperties } from './service.js';

/**
 * The timers most types want: online and offline may take 3 minutes,
 * looks-alive every 5 s, is-alive every 10 s, a check may take 5 s.
 */
export const DEFAULT_TIMING = Object.freeze({
  pendingTimeoutMs: 180000,
  looksAliveIntervalMs: 5000,
  isAliveIntervalMs: 10000,
  checkTimeoutMs: 5000,
});

/** The answer to a control code a type does not know, naming the ones it does. */
export function unknownControl(code, known = []) {
  if (known.length === 0) return `unknown control code ${JSON.stringify(code)}; this type answers none`;
  return `unknown control code ${JSON.stringify(code)}; known: ${known.join(', ')}`;
}

/** An error for the contract's `result`: componentize-js sends a thrown value's `payload`. */
function failWith(payload) {
  const err = new Error(typeof payload === 'string' ? payload : payload.reason);
  err.payload = payload;
  return err;
}

/** What a thrown value in `open` or `validate` becomes: the property-error. */
function asPropertyError(thrown) {
  if (thrown instanceof PropertyError) return { property: thrown.property, reason: thrown.reason };
  return { property: '', reason: `open failed: ${reasonOf(thrown)}` };
}

/** `ok` as the contract's health. */
function health(check) {
  try {
    check();
    return { tag: 'healthy' };
  } catch (err) {
    return { tag: 'failed', val: reasonOf(err) };
  }
}

/** `call` with a thrown value turned into the call's error text. */
function orError(call) {
  try {
    return call();
  } catch (err) {
    throw failWith(reasonOf(err));
  }
}

function u64(ms, what) {
  if (!Number.isSafeInteger(ms) || ms < 0) throw new TypeError(`${what}: ${ms} is not a whole number of milliseconds`);
  return BigInt(ms);
}

/**
 * A resource type as the bindings want it exported:
 * `export const resourceType = exportType({...})`.
 *
 * The definition:
 * - `name`, `version`, `description`: what describe() says;
 * - `properties`: the schema (`Property[]`), declared once;
 * - `timing` (merged over `DEFAULT_TIMING`), `flags`
 *   (`{clusterSingleton, onlineNoPendingTimeout}`);
 * - `open(name, props)`: parse the values (`Props`; its getters throw a
 *   PropertyError naming the property) into the resource; start nothing.
 *
 * The resource `open` returns has `online()` and `isAlive()` (returns, or
 * throws the reason it is not healthy) and may have `offline()` (default:
 * stop the managed process with 10 s of grace), `terminate()` (default:
 * kill it), `looksAlive()` (default: isAlive) and `control(code,
 * payload)` (default: every code refused).
 */
export function exportType(definition) {
  const { name, version, description, open } = definition;
  for (const [field, value] of Object.entries({ name, version, description })) {
    if (typeof value !== 'string') throw new TypeError(`exportType: ${field} must be a string`);
  }
  if (typeof open !== 'function') throw new TypeError('exportType: open(name, props) is missing');
  const schema = [...(definition.properties ?? [])];
  const timing = { ...DEFAULT_TIMING, ...(definition.timing ?? {}) };
  const flags = {
    clusterSingleton: Boolean(definition.flags?.clusterSingleton),
    onlineNoPendingTimeout: Boolean(definition.flags?.onlineNoPendingTimeout),
  };

  const openResource = (resourceName, values) => {
    try {
      return open(resourceName, new Props(values, schema));
    } catch (err) {
      throw failWith(asPropertyError(err));
    }
  };

  class Instance {
    constructor(resource) {
      this.resource = resource;
    }

    static open(resourceName, values) {
      return new Instance(openResource(resourceName, values));
    }

    online() {
      orError(() => this.resource.online());
    }

    offline() {
      orError(() => (this.resource.offline ? this.resource.offline() : stop(DEFAULT_STOP_GRACE_MS)));
    }

    terminate() {
      try {
        if (this.resource.terminate) this.resource.terminate();
        else stop(0);
      } catch (err) {
        log('warn', `terminate: ${reasonOf(err)}`);
      }
    }

    looksAlive() {
      return health(() => (this.resource.looksAlive ? this.resource.looksAlive() : this.resource.isAlive()));
    }

    isAlive() {
      return health(() => this.resource.isAlive());
    }

    control(code, payload) {
      return orError(() => {
        if (!this.resource.control) throw new Error(unknownControl(code));
        return String(this.resource.control(code, payload));
      });
    }
  }

  return {
    describe() {
      return {
        name,
        version,
        description,
        properties: schema.map((p) => p.spec()),
        timing: {
          pendingTimeoutMs: u64(timing.pendingTimeoutMs, 'pendingTimeoutMs'),
          looksAliveIntervalMs: u64(timing.looksAliveIntervalMs, 'looksAliveIntervalMs'),
          isAliveIntervalMs: u64(timing.isAliveIntervalMs, 'isAliveIntervalMs'),
          checkTimeoutMs: u64(timing.checkTimeoutMs, 'checkTimeoutMs'),
        },
        flags,
      };
    },

    validate(values) {
      openResource('', values);
    },

    Instance,
  };
}

/**
 * A type that manages one service and checks it, the shape of most types
 * (the Rust SDK's ServiceType): it gives its name, its own properties and
 * its check; the SDK does the rest.
 *
 * | the agent calls | the SDK does |
 * |---|---|
 * | describe | `serviceProperties(service)`, then `properties` |
 * | validate, open | `Service.fromProps`, then `open(props)` (the type's own state) |
 * | online | `online(state, service)`, by default: start, wait for `ready` |
 * | offline | SIGTERM, SIGKILL after `stop-grace-ms` |
 * | terminate | kill |
 * | looks-alive | the process runs and `quickCheck(state)` passes |
 * | is-alive | the process runs and `check(state)` passes |
 * | control | `pid`, the codes in `controls`, others refused naming these |
 *
 * The definition: `name`, `version`, `description`, `service`
 * (`{program, args, startupTimeoutMs}`: the defaults of the service's
 * properties), `properties`, `timing`, `flags`, `open(props)`,
 * `check(state)` (throws the reason), optionally `quickCheck(state)`,
 * `ready(state)`, `online(state, service)`, `offline(state, service)` and
 * `controls` (`{code: (state, payload) => answer}`).
 */
export function exportService(definition) {
  const { check } = definition;
  if (typeof check !== 'function') throw new TypeError('exportService: check(state) is missing');
  const quickCheck = definition.quickCheck ?? check;
  const ready = definition.ready ?? check;
  const controls = definition.controls ?? {};
  const known = [...Object.keys(controls), 'pid'];
  const ownOpen = definition.open ?? (() => ({}));
  return exportType({
    name: definition.name,
    version: definition.version,
    description: definition.description,
    timing: definition.timing,
    flags: definition.flags,
    properties: [...serviceProperties(definition.service), ...(definition.properties ?? [])],
    open(_name, props) {
      const service = Service.fromProps(props);
      const state = ownOpen(props);
      return {
        online: () => (definition.online ? definition.online(state, service) : service.start(() => ready(state))),
        offline: () => (definition.offline ? definition.offline(state, service) : service.stop()),
        terminate: () => service.kill(),
        looksAlive: () => {
          service.running();
          quickCheck(state);
        },
        isAlive: () => {
          service.running();
          check(state);
        },
        control: (code, payload) => {
          if (Object.hasOwn(controls, code)) return controls[code](state, payload);
          if (code === 'pid') return service.pid();
          throw new Error(unknownControl(code, known));
        },
      };
    },
  });
}
