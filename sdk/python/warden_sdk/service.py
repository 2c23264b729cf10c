"""The managed-program life cycle, as the Rust SDK's `service.rs` has it.

`Service` starts the resource's one program from an args template over its
properties, waits until it answers (reporting progress each second), stops
it with a grace period, kills it. `ServiceType` is the usual shape of a
type: one managed program and a check; a type gives its name, its own
properties and its check, and `warden_sdk.export` does the rest.
"""

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from .checks import Failure
from .properties import Property, PropertyRefused, Props, quote
from .resource import DEFAULT_TIMING, Timing, unknown_control

try:  # the component's bindings; absent under plain CPython (unit tests)
    from wit_world.imports import host, process  # type: ignore
except ImportError:
    host = process = None

#: The first pause between readiness checks, and the longest it doubles to:
#: a service up a few milliseconds after its start is online a few
#: milliseconds later, not a whole poll later.
READY_FIRST_PAUSE_MS = 5
READY_MAX_PAUSE_MS = 100
#: How often `Service.start` reports progress while it waits.
PROGRESS_EVERY_MS = 1000

#: `ServiceDefaults.program`: the operator must name the program.
REQUIRED = None
#: `ServiceDefaults.program`: empty by default, the type then watches a
#: service started elsewhere and starts nothing.
OPTIONAL = ""


@dataclass(frozen=True)
class ServiceDefaults:
    """The defaults of a service type's own properties: the `args`
    template, the `program` (a path, `REQUIRED` or `OPTIONAL`) and
    `startup-timeout-ms` (30 s; "0" waits as long as it takes)."""

    args: str
    program: Optional[str] = REQUIRED
    startup_timeout_ms: str = "30000"


def service_properties(defaults: ServiceDefaults) -> List[Property]:
    """The properties `Service.from_props` reads: `program`, `args`,
    `startup-timeout-ms`, `stop-grace-ms` (default 10000)."""
    run = "Path of the program to run (allowed in the node configuration)"
    if defaults.program is REQUIRED:
        program = Property.string("program", run)
    elif defaults.program == OPTIONAL:
        program = Property.string(
            "program", "Path of the program to run; empty: watch a service started elsewhere", ""
        )
    else:
        program = Property.string("program", run, defaults.program)
    return [
        program,
        Property.string(
            "args",
            "Arguments; {name} is replaced by the property name's value; \"...\" or '...' "
            "keeps spaces in one argument",
            defaults.args,
        ),
        Property.duration_ms(
            "startup-timeout-ms",
            "How long online waits for the service to answer (0: as long as it takes)",
            defaults.startup_timeout_ms,
        ),
        Property.duration_ms(
            "stop-grace-ms", "How long offline waits after SIGTERM before SIGKILL", "10000"
        ),
    ]


def expand(template: str, values: Sequence[Tuple[str, str]]) -> str:
    """Replace each `{name}` in `template` by property `name`'s value;
    `{name.host}` and `{name.port}` take the parts of an address. Raises
    ValueError naming what is wrong."""
    found = dict(values)
    out = []
    rest = template
    while "{" in rest:
        before, _, after = rest.partition("{")
        out.append(before)
        name, closed, rest = after.partition("}")
        if not closed:
            raise ValueError(f"unclosed {{ in {quote(template)}")
        if name in found:
            out.append(found[name])
            continue
        base, dot, part = name.rpartition(".")
        if not dot or base not in found or part not in ("host", "port"):
            raise ValueError(f"{{{name}}} names no property")
        host_part, sep, port = found[base].rpartition(":")
        if not sep:
            raise ValueError(f"{{{name}}}: property {quote(base)} ({quote(found[base])}) has no port")
        out.append(host_part.strip("[]") if part == "host" else port)
    out.append(rest)
    return "".join(out)


def split_args(line: str) -> List[str]:
    """Split a command line: whitespace separates, "..." and '...' keep
    what they enclose together (no escapes). Raises ValueError on an
    unclosed quote."""
    args: List[str] = []
    current: Optional[str] = None
    quote_char: Optional[str] = None
    for c in line:
        if quote_char is not None:
            if c == quote_char:
                quote_char = None
            else:
                current = (current or "") + c
        elif c in "\"'":
            quote_char = c
            current = current or ""
        elif c.isspace():
            if current is not None:
                args.append(current)
            current = None
        else:
            current = (current or "") + c
    if quote_char is not None:
        raise ValueError(f"unclosed {quote_char} in {quote(line)}")
    if current is not None:
        args.append(current)
    return args


def describe_state(state) -> str:
    """How a process state reads in a reason ("exited with status 1")."""
    name = type(state).__name__
    if name.endswith("Running"):
        return f"running as pid {state.value}"
    if name.endswith("Exited"):
        return f"exited with status {state.value}"
    if name.endswith("KilledBySignal"):
        return f"killed by signal {state.value}"
    return "not started"


def _running_pid(state) -> Optional[int]:
    return state.value if type(state).__name__.endswith("Running") else None


class Service:
    """One managed service, as the resource's properties describe it."""

    def __init__(
        self,
        program: str,
        args: List[str],
        startup_timeout_ms: int,
        stop_grace_ms: int,
    ):
        #: Empty when the type watches a service started by someone else.
        self.program = program
        self.args = args
        #: How long `start` waits for the service to answer; 0: no limit.
        self.startup_timeout_ms = startup_timeout_ms
        #: How long `stop` waits after SIGTERM before SIGKILL.
        self.stop_grace_ms = stop_grace_ms

    @classmethod
    def from_props(cls, props: Props) -> "Service":
        """Read `service_properties`: the program and its arguments (the
        template expanded over every property, defaults included), the
        timeouts. Raises PropertyRefused naming the property."""
        program = props.get("program")
        args: List[str] = []
        if program:
            try:
                args = split_args(expand(props.get("args"), props.with_defaults()))
            except ValueError as why:
                raise PropertyRefused("args", str(why)) from None
        return cls(
            program, args, props.integer("startup-timeout-ms"), props.integer("stop-grace-ms")
        )

    def _what(self) -> str:
        return self.program or "the service"

    def start(self, ready: Callable[[], None], extra: Sequence[str] = ()) -> None:
        """Start the program unless it runs (with `extra` arguments after
        the template's), then wait until `ready` stops raising, reporting
        progress each second. Raises Failure if the process exits first or
        `startup-timeout-ms` passes."""
        if self.program:
            pid = _running_pid(process.state())
            if pid is not None:
                host.log(host.Level.INFO, f"{self.program} already runs as pid {pid}")
            else:
                spec = process.SpawnSpec(self.program, [*self.args, *extra], [], None)
                try:
                    pid = process.spawn(spec)
                except Exception as err:  # Err(text) from the host
                    raise Failure(str(getattr(err, "value", err))) from None
                host.log(host.Level.INFO, f"started {self.program} as pid {pid}")
        started = host.now_ms()
        last_report = started
        pause_ms = READY_FIRST_PAUSE_MS
        while True:
            try:
                ready()
                return
            except Failure as err:
                why = str(err)
            self.running()
            now = host.now_ms()
            if self.startup_timeout_ms > 0 and now - started >= self.startup_timeout_ms:
                raise Failure(
                    f"{self._what()} did not answer within {self.startup_timeout_ms} ms: {why}"
                )
            if now - last_report >= PROGRESS_EVERY_MS:
                host.report_progress(f"waiting for {self._what()}: {why}")
                last_report = now
            host.sleep_ms(pause_ms)
            pause_ms = min(pause_ms * 2, READY_MAX_PAUSE_MS)

    def running(self) -> None:
        """Return while the program runs (always, when watching a service
        started elsewhere); otherwise raise Failure saying what became of it."""
        if not self.program:
            return
        state = process.state()
        if _running_pid(state) is None:
            raise Failure(f"{self.program} {describe_state(state)}")

    def stop(self):
        """Stop cleanly: SIGTERM, SIGKILL after `stop-grace-ms`. Returns the
        process state; a service started elsewhere is left alone."""
        if not self.program:
            return None
        try:
            return process.stop(self.stop_grace_ms)
        except Exception as err:
            raise Failure(str(getattr(err, "value", err))) from None

    def pid(self) -> str:
        """The program's pid (the `pid` control code, which `warden plugin
        test` kills); otherwise raise Failure with its state."""
        state = process.state()
        pid = _running_pid(state)
        if pid is None:
            raise Failure(describe_state(state))
        return str(pid)

    def kill(self) -> None:
        """Kill at once, best effort; a failure is logged."""
        if self.program:
            try:
                process.stop(0)
            except Exception as err:
                host.log(host.Level.WARN, f"terminate: {getattr(err, 'value', err)}")


class ServiceType:
    """A type that manages one program and checks it. Subclass it, set the
    class attributes, write `__init__(self, props)` (parse the type's own
    properties, raising PropertyRefused) and `check(self)` (raise Failure),
    and export it with `ResourceType = warden_sdk.export(MyType)`.

    | the agent calls | the SDK does |
    |---|---|
    | describe | the service's properties, then PROPERTIES |
    | validate, open | Service.from_props, then the type's __init__ |
    | online | `online`: start, wait for `ready` |
    | offline | `offline`: SIGTERM, SIGKILL after stop-grace-ms |
    | terminate | Service.kill |
    | looks-alive | the process runs and `quick_check` passes |
    | is-alive | the process runs and `check` passes |
    | control | `pid`, the CONTROLS (`control`), others refused naming these |
    """

    #: The type's name, as resources name it (`--type NAME`).
    NAME: str = ""
    #: The type's version: a new file with another version hot-swaps.
    VERSION: str = "0.1.0"
    #: One sentence for operators.
    DESCRIPTION: str = ""
    #: The defaults of program, args and startup-timeout-ms.
    SERVICE: ServiceDefaults = ServiceDefaults("")
    #: The type's own properties, after the service's.
    PROPERTIES: Sequence[Property] = ()
    #: The default timers.
    TIMING: Timing = DEFAULT_TIMING
    #: Type flags: "cluster-singleton", "online-no-pending-timeout".
    FLAGS: Sequence[str] = ()
    #: Control codes `control` answers, besides `pid`.
    CONTROLS: Sequence[str] = ()

    def __init__(self, props: Props):
        """Parse the type's own properties (the service's are parsed)."""

    def check(self) -> None:
        """The thorough check (is-alive), run once the process is known to
        run; by default also `ready` and `quick_check`. Raise Failure."""
        raise NotImplementedError(f"{type(self).__name__} defines no check")

    def quick_check(self) -> None:
        """The cheap check (looks-alive); `check` by default."""
        self.check()

    def ready(self) -> None:
        """What online waits for; `check` by default."""
        self.check()

    def online(self, service: Service) -> None:
        """Start the service and wait until `ready` passes."""
        service.start(self.ready)

    def offline(self, service: Service) -> None:
        """Stop the service."""
        service.stop()

    def control(self, code: str, payload: str) -> str:
        """Answer one of CONTROLS; only those reach it."""
        raise Failure(unknown_control(code, list(self.CONTROLS)))

    @classmethod
    def schema(cls) -> List[Property]:
        """The whole schema: the service's properties, then the type's."""
        return [*service_properties(cls.SERVICE), *cls.PROPERTIES]
