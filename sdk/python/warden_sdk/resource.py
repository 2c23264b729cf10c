"""What every type shares, whatever its shape: the default timers, the
answer to an unknown control code."""

from dataclasses import dataclass
from typing import Sequence

from .properties import quote


@dataclass(frozen=True)
class Timing:
    """A type's default timers (each overridable per resource): online and
    offline may take 3 minutes, looks-alive every 5 s, is-alive every 10 s,
    a check may take 5 s; the Rust SDK's DEFAULT_TIMING."""

    pending_timeout_ms: int = 180_000
    looks_alive_interval_ms: int = 5_000
    is_alive_interval_ms: int = 10_000
    check_timeout_ms: int = 5_000


#: The timers most types want.
DEFAULT_TIMING = Timing()


def unknown_control(code: str, known: Sequence[str]) -> str:
    """The answer to a control code a type does not know, naming those it
    does (the contract asks that unknown codes be refused)."""
    if not known:
        return f"unknown control code {quote(code)}; this type answers none"
    return f"unknown control code {quote(code)}; known: {', '.join(known)}"
