// `redis`: a Redis server (Debian's `redis-server`) as a Warden resource,
// written in JavaScript with the SDK in sdk/js: the same type as
// examples/redis-type (Rust), with the same properties and the same check.
//
// Online starts `redis-server` on the resource's `address`, with its data
// in the resource's data directory, and waits until it answers `PING`.
// Is-alive (and looks-alive) is that `PING`, answered `+PONG`, which the
// agent sends on the type's behalf (the contract's `probe` import: a
// JavaScript component has no sockets). Everything else (the `program`,
// `args`, `startup-timeout-ms` and `stop-grace-ms` properties, starting,
// stopping, killing, the `pid` control code) is the SDK's `exportService`.

import { exportService, property } from '../../../sdk/js/src/index.js';
import { exchangeLine } from '../../../sdk/js/src/checks.js';

/** The type's version, what `warden plugin versions` shows. */
export const VERSION = '0.1.0';

export const resourceType = exportService({
  name: 'redis',
  version: VERSION,
  description: 'A Redis server, checked by PING answered +PONG.',
  // `--dir .`: the managed process runs in the resource's data directory.
  service: {
    program: '/usr/bin/redis-server',
    args: '--port {address.port} --bind {address.host} --dir . --save "" --appendonly no --daemonize no',
  },
  properties: [
    property.address('address', 'Where Redis listens (ip:port)').default('127.0.0.1:6379'),
    property.durationMs('answer-timeout-ms', 'How long a PING may take').default('2000'),
  ],
  // Redis starts in well under 30 s.
  timing: { pendingTimeoutMs: 30000 },
  open: (props) => ({
    address: props.address('address'),
    answerMs: props.duration('answer-timeout-ms'),
  }),
  check(redis) {
    exchangeLine(redis.address, 'PING', '+PONG', redis.answerMs);
  },
});
