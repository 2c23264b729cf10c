// A JavaScript type for host/tests/all/lang_js.rs that throws on request:
// a `sleep` process whose is-alive, online or control throws an Error when
// the property `fault` (or the control code) names it. The SDK must report
// each with its message, and the next call must run.
//
// Its control `http-check` makes one SDK `httpCheck` (contract 0.5.0) of
// the resource's `target`: the payload is `PATH EXPECT fresh|reuse`
// (EXPECT a status or a class such as `2xx`), the answer the status.

import { exportService, property } from '../../../../sdk/js/src/index.js';
import { httpCheck } from '../../../../sdk/js/src/checks.js';

export const resourceType = exportService({
  name: 'js-thrower',
  version: '0.1.0',
  description: 'Sleeps, and throws where it is told to.',
  service: { program: '/usr/bin/sleep', args: '600', startupTimeoutMs: 5000 },
  properties: [
    property.string('fault', 'Where to throw: none, online, is-alive').default('none'),
    property.address('target', 'What the control http-check asks').default('127.0.0.1:9'),
  ],
  timing: { pendingTimeoutMs: 10000 },
  open: (props) => ({ fault: props.string('fault'), target: props.address('target') }),
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
    'http-check': (state, payload) => {
      const [path, expectText, reuse] = payload.split(' ');
      const expect = /^\d+$/.test(expectText) ? Number(expectText) : expectText;
      const status = httpCheck(state.target, path, {
        expect,
        reuseConnection: reuse === 'reuse',
        timeoutMs: 5000,
      });
      return String(status);
    },
  },
});
