// A JavaScript type for host/tests/all/lang_js.rs that throws on request:
// a `sleep` process whose is-alive, online or control throws an Error when
// the property `fault` (or the control code) names it. The SDK must report
// each with its message, and the next call must run.

import { exportService, property } from '../../../../sdk/js/src/index.js';

export const resourceType = exportService({
  name: 'js-thrower',
  version: '0.1.0',
  description: 'Sleeps, and throws where it is told to.',
  service: { program: '/usr/bin/sleep', args: '600', startupTimeoutMs: 5000 },
  properties: [property.string('fault', 'Where to throw: none, online, is-alive').default('none')],
  timing: { pendingTimeoutMs: 10000 },
  open: (props) => ({ fault: props.string('fault') }),
  check(state) {
    if (state.fault === 'is-alive') throw new Error('thrown by is-alive on purpose');
  },
  ready: () => {},
  online(state, service) {
    if (state.fault === 'online') throw new TypeError('thrown by online on purpose');
    service.start(() => {});
  },
  controls: {
    throw: (_state, payload) => {
      throw new RangeError(`thrown by control: ${payload}`);
    },
    'throw-value': () => {
      throw { not: 'an error' };
    },
    echo: (_state, payload) => payload,
  },
});
