// `tcp-service`: any program that listens on a TCP port, as a Warden
// resource. The template for a new resource type in JavaScript.
//
// Online starts `program` with `args` (a template: `{address}`,
// `{address.host}`, `{address.port}` and any other `{property}` are
// replaced by their values) and waits until `address` accepts a TCP
// connection. Is-alive and looks-alive: the program runs and `address`
// accepts a connection within `connect-timeout-ms` (the agent connects on
// the type's behalf: the contract's `probe` import). Offline sends SIGTERM
// (SIGKILL after `stop-grace-ms`); terminate kills; control `pid` answers
// the program's pid. All but the check is the SDK's `exportService`.

import { exportService, property } from '../warden-sdk/index.js';
import { connect } from '../warden-sdk/checks.js';

export const resourceType = exportService({
  // What operators write as the resource's `type`.
  name: 'tcp-service',
  version: '0.1.0',
  description: 'A program listening on a TCP port, healthy while the port accepts connections.',
  // `program` is required; `args` defaults to passing the address.
  service: { args: '--listen {address}' },
  // The type's own properties, declared once: describe() lists them and
  // `open` reads them. A property of kind address is also the only place
  // the type's checks may reach.
  properties: [
    property.address('address', 'Where the program listens (host:port)'),
    property.durationMs('connect-timeout-ms', 'How long a check may wait to connect').default('2000'),
  ],
  // What one open resource keeps: its properties, parsed (a refused value
  // throws a PropertyError naming it).
  open: (props) => ({
    address: props.address('address'),
    connectTimeoutMs: props.duration('connect-timeout-ms'),
  }),
  // Healthy while the port accepts a connection (the SDK has already
  // checked that the program runs). Throw the reason to fail.
  check(service) {
    connect(service.address, service.connectTimeoutMs);
  },
});
