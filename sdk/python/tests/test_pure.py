"""The SDK's parts that need no component (schema, getters, the args
template, the checks' address parsing), under plain CPython:
    python3 -m unittest discover -s sdk/python/tests -t sdk/python
host/tests/all/lang_py.rs runs them. Texts match the Rust SDK's."""

import unittest

from warden_sdk import Property, PropertyRefused, Props, ServiceDefaults, ServiceType
from warden_sdk import checks, unknown_control
from warden_sdk.service import OPTIONAL, Service, expand, service_properties, split_args

SCHEMA = [
    Property.address("address", "Where it listens"),
    Property.duration_ms("answer-timeout-ms", "How long", "3000"),
    Property.string("store", "The store", ""),
    Property.boolean("read-only", "Mount read-only", "false"),
    Property.integer("max-lag", "Bound on the lag", "1000"),
]


def refused(call):
    try:
        call()
    except PropertyRefused as err:
        return err.property, err.reason
    raise AssertionError("not refused")


class PropsTest(unittest.TestCase):
    def test_defaults_and_required(self):
        props = Props([("answer-timeout-ms", ""), ("address", "")], SCHEMA)
        self.assertEqual(props.duration_ms("answer-timeout-ms"), 3000)
        self.assertEqual(props.get("store"), "")
        self.assertEqual(refused(lambda: props.address("address")),
                         ("address", "required: where it listens"))
        self.assertEqual(refused(lambda: Props([], [Property.string("x", "TCP port")]).get("x")),
                         ("x", "required: TCP port"))

    def test_bad_values_name_the_property(self):
        props = Props([("max-lag", "a lot"), ("read-only", "yes"), ("answer-timeout-ms", "5s")],
                      SCHEMA)
        self.assertEqual(refused(lambda: props.integer("max-lag")),
                         ("max-lag", 'expected a whole number, got "a lot"'))
        self.assertEqual(refused(lambda: props.boolean("read-only")),
                         ("read-only", 'expected true or false, got "yes"'))
        self.assertEqual(refused(lambda: props.duration_ms("answer-timeout-ms")),
                         ("answer-timeout-ms", 'expected a number of milliseconds, got "5s"'))
        self.assertIn("does not declare", refused(lambda: props.get("nope"))[1])
        self.assertIn("a duration in milliseconds",
                      refused(lambda: props.boolean("answer-timeout-ms"))[1])

    def test_addresses_need_a_port(self):
        for bad in ["nohost", ":25", "host:port", "host:70000", "host:-1"]:
            self.assertEqual(refused(lambda: Props([("address", bad)], SCHEMA).address("address"))[0],
                             "address", bad)
        for good in ["localhost:25", "[::1]:25", "10.0.0.5:25"]:
            self.assertEqual(Props([("address", good)], SCHEMA).address("address"), good)

    def test_huge_and_odd_values_are_refused_not_crashed_on(self):
        huge = "9" * 100_000
        name, reason = refused(lambda: Props([("max-lag", huge)], SCHEMA).integer("max-lag"))
        self.assertEqual(name, "max-lag")
        self.assertLess(len(reason), 200)
        self.assertEqual(Props([("max-lag", str(2**64 - 1))], SCHEMA).integer("max-lag"), 2**64 - 1)
        self.assertEqual(refused(lambda: Props([("max-lag", str(2**64))], SCHEMA).integer("max-lag"))[0],
                         "max-lag")
        self.assertEqual(refused(lambda: Props([("max-lag", "²")], SCHEMA).integer("max-lag"))[0],
                         "max-lag")
        with self.assertRaises(ValueError):
            Property("x", "float", "help")


class TemplateTest(unittest.TestCase):
    def test_expand_and_split(self):
        values = [("address", "127.0.0.1:25")]
        self.assertEqual(expand("--listen {address} -x", values), "--listen 127.0.0.1:25 -x")
        self.assertEqual(expand("{address.host} {address.port}", values), "127.0.0.1 25")
        self.assertEqual(expand("{a.host}", [("a", "[::1]:7")]), "::1")
        for bad in ["{nope}", "{address.nope}", "{unclosed"]:
            with self.assertRaises(ValueError):
                expand(bad, values)
        self.assertEqual(split_args('-c /etc/n.conf -g "daemon off;" \'\''),
                         ["-c", "/etc/n.conf", "-g", "daemon off;", ""])
        with self.assertRaises(ValueError):
            split_args('"open')

    def test_service_from_props(self):
        schema = service_properties(ServiceDefaults("--port {address.port}", program="/usr/bin/redis-server"))
        schema.append(Property.address("address", "Where", "127.0.0.1:6379"))
        service = Service.from_props(Props([], schema))
        self.assertEqual((service.program, service.args), ("/usr/bin/redis-server", ["--port", "6379"]))
        self.assertEqual((service.startup_timeout_ms, service.stop_grace_ms), (30000, 10000))
        bad = Props([("args", "{nope}")], schema)
        self.assertEqual(refused(lambda: Service.from_props(bad)), ("args", "{nope} names no property"))
        watch = service_properties(ServiceDefaults("", program=OPTIONAL))
        self.assertEqual(Service.from_props(Props([], watch)).program, "")
        required = service_properties(ServiceDefaults(""))
        self.assertEqual(refused(lambda: Service.from_props(Props([], required)))[0], "program")

    def test_schema_and_controls(self):
        class Echo(ServiceType):
            NAME = "echo"
            PROPERTIES = [Property.address("address", "Where it listens")]

        names = [p.name for p in Echo.schema()]
        self.assertEqual(names, ["program", "args", "startup-timeout-ms", "stop-grace-ms", "address"])
        self.assertEqual(unknown_control("nope", []), 'unknown control code "nope"; this type answers none')
        self.assertEqual(unknown_control("nope", ["lag", "pid"]),
                         'unknown control code "nope"; known: lag, pid')


class ChecksTest(unittest.TestCase):
    def test_addresses_without_a_lookup(self):
        self.assertEqual(len(checks.socket_addresses("127.0.0.1:25")), 1)
        self.assertEqual(len(checks.socket_addresses("localhost:25")), 2)
        self.assertEqual(len(checks.socket_addresses("[::1]:25")), 1)
        for bad in ["mail.example:25", "127.0.0.1", "1.2.3.4:99999"]:
            with self.assertRaises(checks.Failure):
                checks.socket_addresses(bad)

    def test_a_dead_server_is_a_failure_with_a_reason(self):
        import socket
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        listener.close()  # nothing listens there now
        with self.assertRaises(checks.Failure) as raised:
            checks.exchange_line(address, "PING", "+PONG", 1000)
        self.assertIn(f"connecting to {address}", str(raised.exception))
        with self.assertRaises(checks.Failure):
            checks.exchange_line(address, "PING\r\nFLUSHALL", "+PONG", 1000)


if __name__ == "__main__":
    unittest.main()
