"""`redis`: a Redis server (Debian's `redis-server`) as a Warden resource,
written in Python with warden_sdk: the same type as examples/redis-type.

Online starts `redis-server` on the resource's `address`, with its data in
the resource's data directory, and waits until it answers `PING`. Is-alive
(and looks-alive) is that `PING`, answered `+PONG`. Everything else (the
`program`, `args`, `startup-timeout-ms` and `stop-grace-ms` properties,
starting, stopping, killing, the `pid` control code) is the SDK's
`ServiceType`.
"""

import warden_sdk as warden
from warden_sdk import Property, ServiceDefaults, Timing


class Redis(warden.ServiceType):
    """One Redis resource: where it listens and how long a PING may take."""

    NAME = "redis"
    VERSION = "0.1.0"
    DESCRIPTION = "A Redis server, checked by PING answered +PONG."
    # `--dir .`: the managed process runs in the resource's data directory.
    SERVICE = ServiceDefaults(
        '--port {address.port} --bind {address.host} --dir . --save "" '
        "--appendonly no --daemonize no",
        program="/usr/bin/redis-server",
    )
    PROPERTIES = [
        Property.address("address", "Where Redis listens (ip:port)", "127.0.0.1:6379"),
        Property.duration_ms("answer-timeout-ms", "How long a PING may take", "2000"),
    ]
    # Redis starts in well under 30 s.
    TIMING = Timing(pending_timeout_ms=30_000)

    def __init__(self, props):
        self.address = props.address("address")
        self.answer_ms = props.duration_ms("answer-timeout-ms")

    def check(self):
        warden.checks.exchange_line(self.address, "PING", "+PONG", self.answer_ms)


ResourceType = warden.export(Redis)
