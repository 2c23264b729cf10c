"""warden_sdk: write Warden resource types in Python.

A type is a `ServiceType` subclass (one managed program and a check),
exported from the component's app module:

    import warden_sdk as warden

    class Redis(warden.ServiceType):
        NAME = "redis"
        ...
        def check(self):
            warden.checks.exchange_line(self.address, "PING", "+PONG", self.answer_ms)

    ResourceType = warden.export(Redis)

Built with componentize-py against the contract's WIT (world `plugin`);
see docs/sdk.md, "Python".
"""

from . import checks
from .checks import Failure
from .export import export
from .properties import Property, PropertyRefused, Props
from .resource import DEFAULT_TIMING, Timing, unknown_control
from .service import OPTIONAL, REQUIRED, Service, ServiceDefaults, ServiceType

#: The SDK's version.
__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMING",
    "Failure",
    "OPTIONAL",
    "Property",
    "PropertyRefused",
    "Props",
    "REQUIRED",
    "Service",
    "ServiceDefaults",
    "ServiceType",
    "Timing",
    "checks",
    "export",
    "unknown_control",
]
