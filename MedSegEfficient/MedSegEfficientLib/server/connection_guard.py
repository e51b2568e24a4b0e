"""What keeps one client from holding or fooling the server: deadlines on every connection (an idle or slow client
is cut off, not waited for), the ``Host`` check (a web page that reaches a loopback server by DNS rebinding names
its own host) and a delay on wrong tokens (guessing runs at ``1 / FAILED_TOKEN_SECONDS`` tries a second at most)."""

from __future__ import annotations

import hmac
import ipaddress
import socket
import threading
import time

CLIENT_SECONDS = 30.0  # default: to send a request's line and headers, and the idle time allowed between requests
MIN_BYTES_PER_SECOND = 256 * 1024  # a body or an answer slower than this, on top of twice the client time, is cut off
FAILED_TOKEN_SECONDS = 0.5


class ConnectionDeadlines:
    """One thread that shuts down every connection past its deadline; handlers move their deadline as they go."""

    def __init__(self, client_seconds: float = CLIENT_SECONDS) -> None:
        self.client_seconds = client_seconds
        self._deadlines: dict[socket.socket, float | None] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._tick = min(1.0, client_seconds / 4)
        self._thread = threading.Thread(target=self._reap, name="medseg-deadlines", daemon=True)
        self._thread.start()

    def wait_for_request(self, connection: socket.socket) -> None:
        self.set(connection, self.client_seconds)

    def set(self, connection: socket.socket, seconds: float | None) -> None:
        """From now, ``seconds`` to go; None: no deadline (the request waits for its inference)."""
        with self._lock:
            self._deadlines[connection] = None if seconds is None else time.monotonic() + seconds

    def for_transfer(self, connection: socket.socket, size: int) -> None:
        self.set(connection, 2 * self.client_seconds + size / MIN_BYTES_PER_SECOND)

    def forget(self, connection: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(connection, None)

    def stop(self) -> None:
        self._stopped.set()

    def _reap(self) -> None:
        while not self._stopped.wait(self._tick):
            now = time.monotonic()
            with self._lock:
                overdue = [connection for connection, deadline in self._deadlines.items()
                           if deadline is not None and deadline < now]
                for connection in overdue:
                    self._deadlines.pop(connection)
            for connection in overdue:
                try:
                    connection.shutdown(socket.SHUT_RDWR)  # the handler's read or write ends with an error
                except OSError:
                    pass


def allowed_hosts(bound_host: str) -> set[str] | None:
    """The names a request's ``Host`` may give (lower case, no port); None: any (bound to every interface, where
    ``medseg serve`` demands a token)."""
    try:
        address = ipaddress.ip_address(bound_host)
    except ValueError:
        return {bound_host.lower()}
    if address.is_unspecified:
        return None
    names = {str(address), f"[{address}]"}
    if address.is_loopback:
        names |= {"localhost", "127.0.0.1", "[::1]", "::1"}
    else:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return names


def host_of(header: str) -> str:
    """``Host`` without its port: ``name:8000`` -> ``name``, ``[::1]:8000`` -> ``[::1]``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class TokenGuard:
    """Compares tokens as bytes (a non-ASCII header is just a wrong token) and slows every failure, one at a time."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._expected = token.encode("utf-8") if token is not None else b""
        self._failures = threading.Lock()

    def accepts(self, given: str) -> bool:
        if hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._expected):
            return True
        with self._failures:  # serialised: parallel guesses wait for each other
            time.sleep(FAILED_TOKEN_SECONDS)
        return False


__all__ = ["CLIENT_SECONDS", "ConnectionDeadlines", "FAILED_TOKEN_SECONDS", "TokenGuard", "allowed_hosts",
           "host_of"]
