"""Sockets bound before a server starts, and ASGI apps served by uvicorn from a daemon thread.

Binding first makes a server's URL (and port 0's real port) known up front: the emulator can be
told where to post webhooks before the receiver runs, and a client that reads a printed URL early
waits in the listening socket's backlog instead of being refused. ``BackgroundServer`` is how the
emulator runs in tests and the sandbox, and how the demo serves its webhook receiver.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

__all__ = ["BackgroundServer", "bind_socket", "socket_url"]

_START_TIMEOUT = 30.0


def bind_socket(host: str, port: int, *, backlog: int | None = None) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port); listening when ``backlog`` is
    given, from which moment clients queue until a server accepts them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def socket_url(sock: socket.socket, *, tls: bool = False) -> str:
    """The base URL of a bound socket; one bound to every interface is shown as 127.0.0.1."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - bound to all interfaces: show a local URL
        host = "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{netloc}:{port}"


class BackgroundServer:
    """``config``'s app served by uvicorn from a daemon thread on ``sock`` (bound beforehand).

    >>> sock = bind_socket("127.0.0.1", 0, backlog=1024)   # doctest: +SKIP
    >>> with BackgroundServer(uvicorn.Config(app), sock) as server:
    ...     httpx.get(f"{server.url}/healthz")
    """

    def __init__(
        self, config: uvicorn.Config, sock: socket.socket, *, name: str = "cio-relay-server"
    ) -> None:
        self.sock = sock
        self.url = socket_url(sock, tls=config.ssl_certfile is not None)
        self._name = name
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()

    def __repr__(self) -> str:
        return f"BackgroundServer(url={self.url!r})"

    def start(self) -> BackgroundServer:
        """Return once uvicorn serves on the socket; raise if it fails to start."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        # uvicorn's own flag, polled while waiting on the thread's end (a failed start ends it).
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if self._finished.wait(0.005):
                raise RuntimeError(f"{self._name} failed to start on {self.url}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._name} did not start on {self.url} in time")
        return self

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self.sock])
        finally:
            self._finished.set()

    def stop(self) -> None:
        """Finish the requests in flight, stop, and close the socket; safe to call twice."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_START_TIMEOUT)
            self._thread = None
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
