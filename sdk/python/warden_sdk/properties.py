"""The property schema, declared once, and typed getters over it.

A type lists its properties once (name, kind, default, help); `describe`
is built from that list, and `Props` reads a resource's values through it.
Every getter's error is a `PropertyRefused` naming the property, which the
SDK answers `validate` and `open` with. Same rules and texts as the Rust
SDK's `properties.rs`.
"""

import json
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

#: The kinds of the contract's `property-kind`, by the names the SDK uses.
STRING = "string"
INTEGER = "integer"
BOOLEAN = "boolean"
DURATION_MS = "duration-ms"
ADDRESS = "address"

_KIND_NAMES = {
    STRING: "a string",
    INTEGER: "an integer",
    BOOLEAN: "a boolean",
    DURATION_MS: "a duration in milliseconds",
    ADDRESS: "an address",
}


#: The largest whole number a property holds (the contract's u64).
MAX_WHOLE = 2**64 - 1
#: How much of a value an error quotes.
MAX_QUOTED = 100


def quote(text: str) -> str:
    """`text` quoted as the Rust SDK's messages quote it (`"a lot"`), so
    both SDKs' errors read the same; a long one is cut."""
    if len(text) > MAX_QUOTED:
        text = text[:MAX_QUOTED] + "..."
    return json.dumps(text, ensure_ascii=False)


def _whole(text: str) -> int:
    """`text` as a u64, or None: ASCII digits only, no sign, in range
    (checked before conversion, which refuses very long numbers)."""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_WHOLE)):
        return None
    value = int(text)
    return value if value <= MAX_WHOLE else None


class PropertyRefused(Exception):
    """A property value that `validate` or `open` refuses, and why.

    Raise it from a type's `open` (or let a `Props` getter raise it); the
    SDK returns it to the agent as the contract's `property-error`.
    """

    def __init__(self, property: str, reason: str):
        super().__init__(f"{property}: {reason}")
        self.property = property
        self.reason = reason


@dataclass(frozen=True)
class Property:
    """One entry of a type's schema. A property with a default is
    optional; one without is required. Declare `address` properties for
    every address the type connects to: the agent grants connections only
    to those."""

    name: str
    kind: str
    description: str
    default: Optional[str] = None

    def __post_init__(self):
        if self.kind not in _KIND_NAMES:
            raise ValueError(f"property {self.name!r}: unknown kind {self.kind!r}")
        if self.default is not None and not isinstance(self.default, str):
            raise TypeError(
                f"property {self.name!r}: the default is written as text, got {self.default!r}"
            )

    @classmethod
    def string(cls, name: str, description: str, default: Optional[str] = None) -> "Property":
        """A free-form text property."""
        return cls(name, STRING, description, default)

    @classmethod
    def integer(cls, name: str, description: str, default: Optional[str] = None) -> "Property":
        """A whole number; the agent refuses anything else before the type sees it."""
        return cls(name, INTEGER, description, default)

    @classmethod
    def boolean(cls, name: str, description: str, default: Optional[str] = None) -> "Property":
        """`true` or `false`."""
        return cls(name, BOOLEAN, description, default)

    @classmethod
    def duration_ms(cls, name: str, description: str, default: Optional[str] = None) -> "Property":
        """A duration in milliseconds, written as a whole number."""
        return cls(name, DURATION_MS, description, default)

    @classmethod
    def address(cls, name: str, description: str, default: Optional[str] = None) -> "Property":
        """A TCP `host:port` the resource may connect to: declaring it is
        what grants the connection."""
        return cls(name, ADDRESS, description, default)

    @property
    def required(self) -> bool:
        """Whether a resource must set it: it has no default."""
        return self.default is None


def _required(prop: Property) -> PropertyRefused:
    """The error for a required property without a value: its help text,
    lower-cased unless it starts with an acronym ("TCP port")."""
    what = prop.description
    if len(what) > 1 and what[1] == what[1].lower():
        what = what[0].lower() + what[1:]
    return PropertyRefused(prop.name, f"required: {what}")


class Props:
    """A resource's values read through its type's schema.

    A value the resource does not set is the schema's default. Every
    getter raises `PropertyRefused` naming the property.
    """

    def __init__(self, values: Sequence[Tuple[str, str]], schema: Sequence[Property]):
        self._values: List[Tuple[str, str]] = list(values)
        self._schema: List[Property] = list(schema)

    def values(self) -> List[Tuple[str, str]]:
        """The values as given (name, value pairs)."""
        return list(self._values)

    def schema(self) -> List[Property]:
        """The schema the values are read through."""
        return list(self._schema)

    def with_defaults(self) -> List[Tuple[str, str]]:
        """Every value, the schema's defaults added for those not set (what
        an args template sees)."""
        every = list(self._values)
        given = {name for name, _ in every}
        for prop in self._schema:
            if prop.default is not None and prop.name not in given:
                every.append((prop.name, prop.default))
        return every

    def _lookup(self, name: str) -> Tuple[Property, Optional[str]]:
        prop = next((p for p in self._schema if p.name == name), None)
        if prop is None:
            raise PropertyRefused(
                name, "the type reads a property its schema does not declare (a bug in the type)"
            )
        value = next((v for k, v in self._values if k == name), None)
        return prop, value if value is not None else prop.default

    def _typed(self, name: str, wanted: Tuple[str, ...], as_what: str) -> str:
        prop, value = self._lookup(name)
        if prop.kind not in wanted:
            raise PropertyRefused(
                name,
                f"the type reads it as {as_what}, but declares it {_KIND_NAMES[prop.kind]} "
                "(a bug in the type)",
            )
        if value:
            return value
        if prop.default:
            return prop.default
        raise _required(prop)

    def get(self, name: str) -> str:
        """The text of a property, whatever its kind; a required property
        that is unset or empty is refused."""
        prop, value = self._lookup(name)
        if value is None or (value == "" and prop.required):
            raise _required(prop)
        return value

    def string(self, name: str) -> str:
        """`get`, for a string property."""
        return self.get(name)

    def integer(self, name: str) -> int:
        """A whole number (a property of kind integer or duration-ms)."""
        text = self._typed(name, (INTEGER, DURATION_MS), "a whole number")
        value = _whole(text)
        if value is None:
            raise PropertyRefused(name, f"expected a whole number, got {quote(text)}")
        return value

    def duration_ms(self, name: str) -> int:
        """A duration in milliseconds, from a property of kind duration-ms."""
        text = self._typed(name, (DURATION_MS,), "a duration")
        value = _whole(text)
        if value is None:
            raise PropertyRefused(name, f"expected a number of milliseconds, got {quote(text)}")
        return value

    def boolean(self, name: str) -> bool:
        """`true` or `false`, from a property of kind boolean."""
        text = self._typed(name, (BOOLEAN,), "a boolean")
        if text == "true":
            return True
        if text == "false":
            return False
        raise PropertyRefused(name, f"expected true or false, got {quote(text)}")

    def address(self, name: str) -> str:
        """A `host:port` address, from a property of kind address."""
        text = self._typed(name, (ADDRESS,), "an address")
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not port.isascii() or int(port) > 65535:
            raise PropertyRefused(name, f"expected host:port, got {quote(text)}")
        return text
