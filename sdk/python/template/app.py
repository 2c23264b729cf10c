"""`tcp-service`: any program that listens on a TCP port, as a Warden
resource. The template for a new resource type in Python (see README.md).

Online starts `program` with `args` (a template: `{address}`,
`{address.host}`, `{address.port}` and any other `{property}` are replaced
by their values) and waits until `address` accepts a TCP connection.
Is-alive and looks-alive: the program runs and `address` accepts a
connection within `connect-timeout-ms`. Offline sends SIGTERM (SIGKILL after
`stop-grace-ms`); terminate kills; control `pid` answers the program's pid.
All but the check is the SDK's `ServiceType`.
"""

import warden_sdk as warden
from warden_sdk import Property, ServiceDefaults


class TcpService(warden.ServiceType):
    """One open resource: what `__init__` parsed from its properties."""

    # What operators write as the resource's `type`.
    NAME = "tcp-service"
    # A new file with another VERSION replaces this one in a running agent.
    VERSION = "0.1.0"
    DESCRIPTION = "A program listening on a TCP port, healthy while the port accepts connections."
    # `program` is required; `args` defaults to passing the address.
    SERVICE = ServiceDefaults("--listen {address}")
    # The type's own properties, declared once: describe() lists them and
    # __init__ reads them. A property of kind address is also the only
    # place the plugin may connect to.
    PROPERTIES = [
        Property.address("address", "Where the program listens (host:port)"),
        Property.duration_ms("connect-timeout-ms", "How long a check may wait to connect", "2000"),
    ]

    def __init__(self, props):
        # Each getter raises PropertyRefused naming the property.
        self.address = props.address("address")
        self.connect_timeout_ms = props.duration_ms("connect-timeout-ms")

    def check(self):
        """Healthy while the port accepts a connection (the SDK has already
        checked that the program runs); raise warden.Failure otherwise."""
        warden.checks.connect(self.address, self.connect_timeout_ms)


# The component's export: what the agent calls.
ResourceType = warden.export(TcpService)
