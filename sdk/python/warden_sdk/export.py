"""The glue between a `ServiceType` and componentize-py's bindings of the
world `plugin`: the `ResourceType` class the app module exports (describe,
validate) and the `Instance` resource (one open resource's life cycle).

componentize-py looks the resource's class up in a top-level module named
after the interface, `resource_type`; the SDK ships that module
(`sdk/python/resource_type.py`), which takes `Instance` from here.

Every call that has an error channel answers with it: a `Failure` is its
message, any other exception is reported as `ExceptionType: message` and
its traceback logged, so a bug in a type reads as a failed call naming it
rather than a trap. The instance stays usable for the next call.
"""

import traceback
from typing import List, Optional, Tuple, Type

from .checks import Failure
from .properties import ADDRESS, BOOLEAN, DURATION_MS, INTEGER, STRING, PropertyRefused, Props
from .resource import unknown_control
from .service import Service, ServiceType

try:  # the component's bindings; absent under plain CPython (unit tests)
    from componentize_py_types import Err  # type: ignore
    from wit_world import exports  # type: ignore
    from wit_world.exports import resource_type as _resource_type  # type: ignore
    from wit_world.imports import host, types  # type: ignore

    _GuestBase = exports.ResourceType
    _InstanceBase = _resource_type.Instance
except ImportError:
    Err = host = types = None
    _GuestBase = _InstanceBase = object

#: The one type this component exports (`export` sets it, at build time).
_exported: Optional[Type[ServiceType]] = None

#: What a reason may say of a traceback, at most, in the agent's log.
_MAX_TRACEBACK = 2000

_FLAG_NAMES = ("cluster-singleton", "online-no-pending-timeout")


def _exported_type() -> Type[ServiceType]:
    if _exported is None:
        raise RuntimeError(
            "no type is exported: the app module must say ResourceType = warden_sdk.export(MyType)"
        )
    return _exported


def failure_text(call: str, err: BaseException) -> str:
    """The one-line reason a call fails with: a Failure's message, or what
    any other exception says, its traceback logged for the author."""
    if isinstance(err, Failure):
        return str(err)
    text = f"{call} raised {type(err).__name__}: {err}"
    if host is not None:
        trace = "".join(traceback.format_exception(err))[-_MAX_TRACEBACK:]
        host.log(host.Level.WARN, f"{text}\n{trace}")
    return text


def _property_error(call: str, err: BaseException):
    if isinstance(err, PropertyRefused):
        return types.PropertyError(err.property, err.reason)
    # Not about one property: the type's own code failed while opening.
    return types.PropertyError("", failure_text(call, err))


def _kind(kind: str):
    return {
        STRING: types.PropertyKind.STRING,
        INTEGER: types.PropertyKind.INTEGER,
        BOOLEAN: types.PropertyKind.BOOLEAN,
        DURATION_MS: types.PropertyKind.DURATION_MS,
        ADDRESS: types.PropertyKind.ADDRESS,
    }[kind]


def _open(values: List[Tuple[str, str]]) -> Tuple[Service, ServiceType]:
    service_type = _exported_type()
    props = Props(values, service_type.schema())
    return Service.from_props(props), service_type(props)


def export(service_type: Type[ServiceType]):
    """Export `service_type` as this component's resource type. The app
    module says `ResourceType = warden_sdk.export(MyType)`; a type that is
    not fit to export is refused here, when the component is built."""
    global _exported
    if not (isinstance(service_type, type) and issubclass(service_type, ServiceType)):
        raise TypeError(f"export takes a ServiceType subclass, got {service_type!r}")
    if not service_type.NAME:
        raise TypeError(f"{service_type.__name__} sets no NAME")
    if not service_type.VERSION:
        raise TypeError(f"{service_type.__name__} sets no VERSION")
    names = [p.name for p in service_type.schema()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TypeError(f"{service_type.__name__} declares {', '.join(twice)} twice")
    unknown = [f for f in service_type.FLAGS if f not in _FLAG_NAMES]
    if unknown:
        raise TypeError(f"{service_type.__name__}: unknown flags {unknown}; known: {_FLAG_NAMES}")
    _exported = service_type
    return ResourceType


class ResourceType(_GuestBase):
    """`describe` and `validate` of the exported type."""

    def describe(self):
        t = _exported_type()
        flags = types.TypeFlags(0)
        if "cluster-singleton" in t.FLAGS:
            flags |= types.TypeFlags.CLUSTER_SINGLETON
        if "online-no-pending-timeout" in t.FLAGS:
            flags |= types.TypeFlags.ONLINE_NO_PENDING_TIMEOUT
        return types.TypeInfo(
            t.NAME,
            t.VERSION,
            t.DESCRIPTION,
            [
                types.PropertySpec(p.name, _kind(p.kind), p.default, p.required, p.description)
                for p in t.schema()
            ],
            types.Timing(
                t.TIMING.pending_timeout_ms,
                t.TIMING.looks_alive_interval_ms,
                t.TIMING.is_alive_interval_ms,
                t.TIMING.check_timeout_ms,
            ),
            flags,
        )

    def validate(self, properties) -> None:
        try:
            _open(properties)
        except Exception as err:
            raise Err(_property_error("validate", err)) from None


class Instance(_InstanceBase):
    """One open resource: its Service and the type's own object."""

    def __init__(self, service: Service, inner: ServiceType):
        self.service = service
        self.inner = inner

    @classmethod
    def open(cls, name: str, properties) -> "Instance":
        try:
            return cls(*_open(properties))
        except Exception as err:
            raise Err(_property_error("open", err)) from None

    def online(self) -> None:
        try:
            self.inner.online(self.service)
        except Exception as err:
            raise Err(failure_text("online", err)) from None

    def offline(self) -> None:
        try:
            self.inner.offline(self.service)
        except Exception as err:
            raise Err(failure_text("offline", err)) from None

    def terminate(self) -> None:
        try:
            self.service.kill()
        except Exception as err:
            host.log(host.Level.WARN, failure_text("terminate", err))

    def _health(self, call: str, check):
        try:
            self.service.running()
            check()
            return types.Health_Healthy()
        except Exception as err:
            return types.Health_Failed(failure_text(call, err))

    def looks_alive(self):
        return self._health("looks-alive", self.inner.quick_check)

    def is_alive(self):
        return self._health("is-alive", self.inner.check)

    def control(self, code: str, payload: str) -> str:
        known = list(type(self.inner).CONTROLS)
        try:
            if code in known:
                return self.inner.control(code, payload)
            if code == "pid":
                return self.service.pid()
            raise Failure(unknown_control(code, known + ["pid"]))
        except Exception as err:
            raise Err(failure_text("control", err)) from None
