"""py-web: a Python type on the SDK for host/tests/all/lang_py.rs whose
check is `warden.checks.http_check` (contract 0.5.0) of its `target` with
the connection kept, the way a web server's type checks it. Its service is
a `sleep`: what is checked is the test's own HTTP server.

Control `http-check` makes one more check: the payload is
`PATH EXPECT fresh|reuse` (EXPECT a status or a class such as `2xx`), the
answer the status."""

import warden_sdk as warden
from warden_sdk import Property, ServiceDefaults, Timing


class Web(warden.ServiceType):
    NAME = "py-web"
    VERSION = "0.1.0"
    DESCRIPTION = "Checks an HTTP server, keeping the connection."
    SERVICE = ServiceDefaults("600", program="/usr/bin/sleep")
    PROPERTIES = [Property.address("target", "The HTTP server checked")]
    TIMING = Timing(pending_timeout_ms=30_000)
    CONTROLS = ["http-check"]

    def __init__(self, props):
        self.target = props.address("target")

    def check(self):
        warden.checks.http_check(self.target, "/", 2_000, expect="2xx", reuse_connection=True)

    def control(self, code, payload):
        path, expect, reuse = payload.split(" ")
        status = warden.checks.http_check(
            self.target,
            path,
            2_000,
            expect=int(expect) if expect.isdigit() else expect,
            reuse_connection=reuse == "reuse",
        )
        return str(status)


ResourceType = warden.export(Web)
