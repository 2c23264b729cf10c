"""Health-check helpers: connect with a timeout, a one-line exchange
(Redis `PING` answered `+PONG`, an SMTP banner), an HTTP GET, and (contract
0.5.0) an HTTP check with a status class, a host header and a connection
the agent may keep between checks.

Each raises `Failure` with a one-line reason when the check fails. They
run over the contract's `probe` import (0.4.0), the agent making the
connection on the plugin's behalf, when the plugin is built against a
contract that has it; otherwise over WASI sockets (0.3.0), which the agent
narrows the same way: only the addresses named by the resource's `address`
properties, IP literals or `localhost` (a plugin cannot look names up).
"""

# CPython encodes a socket's host with the idna codec, imported lazily;
# a component has only the modules imported when it was built.
import encodings.idna  # noqa: F401
import socket
import time
from typing import List, Optional, Tuple

from .properties import quote

try:  # the bindings of a contract with the probe import (0.4.0 and later)
    from componentize_py_types import Err as _Err  # type: ignore
    from wit_world.imports import probe as _probe  # type: ignore
except ImportError:  # 0.3.0, or plain CPython (the SDK's unit tests)
    _Err = None
    _probe = None

#: The longest answer line read, as the probe import reads it.
MAX_LINE = 4096


class Failure(Exception):
    """A check that failed; the message is the reason the operator reads.
    Raise it from a type's `check`."""


def uses_probe() -> bool:
    """Whether the checks go through the agent's `probe` import (the
    plugin was built against contract 0.4.0 or later)."""
    return _probe is not None


def socket_addresses(address: str) -> List[Tuple[int, tuple]]:
    """The (family, sockaddr) pairs of `host:port` without a name lookup:
    an IPv4 address, `[v6]:port`, or `localhost` (IPv4, then IPv6)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise Failure(f"address {quote(address)} has no port")
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        return [(socket.AF_INET6, (host[1:-1], port, 0, 0))]
    if host.lower() == "localhost":
        return [(socket.AF_INET, ("127.0.0.1", port)), (socket.AF_INET6, ("::1", port, 0, 0))]
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and int(p) < 256 for p in parts):
        return [(socket.AF_INET, (host, port))]
    raise Failure(
        f"address {quote(address)}: plugins cannot look names up; give an IP address or localhost"
    )


def _probe_failure(err) -> Failure:
    """A probe-error (a variant of one-line texts) as a Failure."""
    value = getattr(err, "value", err)
    return Failure(str(getattr(value, "value", value)))


class _Deadline:
    def __init__(self, timeout_ms: int):
        self.end = time.monotonic() + max(timeout_ms, 0) / 1000

    def left(self, what: str) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise Failure(f"timed out before {what}")
        return left


def _connect(address: str, deadline: _Deadline) -> socket.socket:
    last = "no address"
    for family, sockaddr in socket_addresses(address):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left(f"connecting to {address}"))
            sock.connect(sockaddr)
            return sock
        except Failure:
            sock.close()
            raise
        except OSError as err:
            sock.close()
            last = f"connecting to {address}: {err.strerror or err}"
    raise Failure(last)


def _read_line(sock: socket.socket, deadline: _Deadline) -> str:
    data = b""
    while b"\n" not in data:
        if len(data) > MAX_LINE:
            raise Failure(f"an answer line longer than {MAX_LINE} bytes")
        sock.settimeout(deadline.left("an answer came"))
        try:
            chunk = sock.recv(MAX_LINE + 1 - len(data))
        except OSError as err:
            raise Failure(f"reading an answer: {err.strerror or err}") from None
        if not chunk:
            if data:
                break
            raise Failure("the peer closed the connection")
        data += chunk
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    return line.decode("utf-8", "replace")


def connect(address: str, timeout_ms: int) -> int:
    """Open a TCP connection to `address` and close it again; how many
    milliseconds it took. The cheapest looks-alive: the port accepts."""
    if _probe is not None:
        try:
            return _probe.connect(address, timeout_ms)
        except _Err as err:  # componentize-py raises Err(probe-error)
            raise _probe_failure(err) from None
    started = time.monotonic()
    _connect(address, _Deadline(timeout_ms)).close()
    return int((time.monotonic() - started) * 1000)


def exchange_line(address: str, send: Optional[str], expect_prefix: str, timeout_ms: int) -> str:
    """Connect; send `send` followed by CRLF unless it is None; read one
    line and require that it starts with `expect_prefix` (empty accepts
    any). Returns the line without its end. Redis: `("PING", "+PONG")`;
    an SMTP banner: `(None, "220")`."""
    if send is not None and ("\r" in send or "\n" in send):
        raise Failure(f"the line to send holds CR or LF: {quote(send)}")
    if _probe is not None:
        try:
            return _probe.exchange_line(address, send, expect_prefix, timeout_ms)
        except _Err as err:
            raise _probe_failure(err) from None
    deadline = _Deadline(timeout_ms)
    sock = _connect(address, deadline)
    try:
        if send is not None:
            sock.settimeout(deadline.left("sending"))
            try:
                sock.sendall(send.encode() + b"\r\n")
            except OSError as err:
                raise Failure(f"sending {quote(send)}: {err.strerror or err}") from None
        answer = _read_line(sock, deadline)
    finally:
        sock.close()
    if not answer.startswith(expect_prefix):
        asked = quote(send) if send is not None else "the connection"
        raise Failure(f"{asked} was answered {quote(answer[:200])}, not {expect_prefix}...")
    return answer


def http_get(address: str, path: str, expect_status: int, timeout_ms: int) -> int:
    """An HTTP/1.1 GET of `path` (`Host` is the address, `Connection:
    close`) that must answer `expect_status`; returns the status. The body
    is not read and redirects are not followed."""
    if not path.startswith("/") or any(c in path for c in "\r\n "):
        raise Failure(f"the path must start with / and hold no space, CR or LF: {quote(path)}")
    if _probe is not None:
        try:
            return _probe.http_get(address, path, expect_status, timeout_ms)
        except _Err as err:
            raise _probe_failure(err) from None
    deadline = _Deadline(timeout_ms)
    sock = _connect(address, deadline)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: warden\r\nConnection: close\r\n\r\n"
        sock.settimeout(deadline.left("sending"))
        try:
            sock.sendall(request.encode())
        except OSError as err:
            raise Failure(f"sending GET {path}: {err.strerror or err}") from None
        status_line = _read_line(sock, deadline)
    finally:
        sock.close()
    fields = status_line.split()
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise Failure(f"GET {path}: not an HTTP status line: {quote(status_line[:200])}")
    status = int(fields[1])
    if status != expect_status:
        raise Failure(f"GET {path} answered {status}, not {expect_status}")
    return status


def http_check(
    address: str,
    path: str,
    timeout_ms: int,
    expect="2xx",
    host_header: Optional[str] = None,
    reuse_connection: bool = False,
) -> int:
    """An HTTP/1.1 GET of `path` made by the agent (contract 0.5.0's
    `http-check`); returns the status. `expect` is a status (`200`) or a
    class (`"2xx"`); `host_header` is sent as `Host` when given (a host
    name or an IP address, with an optional port); with `reuse_connection`
    the agent keeps the connection for the next check (a kept connection
    does not notice a listener that stopped accepting). Redirects are not
    followed."""
    if _probe is None or not hasattr(_probe, "http_check"):
        raise Failure("http_check needs a plugin built against contract 0.5.0 or later")
    if isinstance(expect, str) and len(expect) == 3 and expect[0] in "12345" and expect[1:] == "xx":
        match = _probe.StatusMatch_Class(int(expect[0]))
    elif isinstance(expect, int) and not isinstance(expect, bool):
        match = _probe.StatusMatch_Exact(expect)
    else:
        raise Failure(f"an HTTP check expects a status or a class such as '2xx', not {expect!r}")
    spec = _probe.HttpCheckSpec(
        address=address,
        path=path,
        host_header=host_header,
        expect=match,
        reuse_connection=reuse_connection,
        timeout_ms=max(int(timeout_ms), 1),
    )
    try:
        return _probe.http_check(spec)
    except _Err as err:
        raise _probe_failure(err) from None
