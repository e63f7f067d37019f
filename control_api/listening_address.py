"""Where this server actually listens, as opposed to where PUBLIC_BASE_URL says it can be reached.

The two differ behind a proxy, which is fine, and when someone starts the server on another port
and forgets the setting, which is not: the built-in simulated callee then dialed a port nobody
listened on. So the simulator dials the address a request reached us at (an ASGI scope's `server`),
and at start-up a PUBLIC_BASE_URL naming this machine on a port we do not listen on is warned about.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from models.log_config import get_logger
from models.settings import Settings

log = get_logger(__name__)

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})
# uvicorn binds its sockets only after the app's start-up has run: look for them for this long.
SOCKETS_WAIT_SECONDS = 10.0
SOCKETS_POLL_SECONDS = 0.05


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class ListeningAddress:
    """The address of the first request that reached this process, learned from its ASGI scope."""

    def __init__(self) -> None:
        self.host: str | None = None
        self.port: int | None = None
        self.secure = False

    def learn(self, scope: Scope) -> None:
        server = scope.get("server")
        # A unix socket has no port; TestClient's "testserver" is no address anything can dial.
        if self.port is not None or not server or server[1] is None or not _is_ip(server[0]):
            return
        self.host, self.port = server[0], int(server[1])
        self.secure = scope.get("scheme") in ("https", "wss")

    def ws_url(self, path: str = "/ws") -> str | None:
        if self.port is None or self.host is None:
            return None
        return f"{'wss' if self.secure else 'ws'}://{_url_host(self.host)}:{self.port}{path}"


class ListeningAddressMiddleware:
    def __init__(self, app: ASGIApp, listening: ListeningAddress) -> None:
        self.app = app
        self.listening = listening

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            self.listening.learn(scope)
        await self.app(scope, receive, send)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _socket_descriptors() -> list[int]:
    """This process's descriptors that are sockets, told apart by their /proc link, never by opening them.

    Duplicating and closing a descriptor of a file drops every POSIX lock this process holds on that
    file: SQLite's locks on the database then vanish, and another process's connection deletes the
    WAL and shared-memory files under this one (lost writes, SIGBUS). So only sockets are touched.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    found = []
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                found.append(int(name))
        except (OSError, ValueError):
            continue
    return found


def listening_sockets() -> list[tuple[str, int]]:
    """(host, port) of each TCP socket this process listens on; empty where fds cannot be listed."""
    found = []
    for descriptor in _socket_descriptors():
        try:
            duplicate = os.dup(descriptor)
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:
            with contextlib.suppress(OSError):
                os.close(duplicate)
            continue
        with sock, contextlib.suppress(OSError):
            tcp = sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)
            if tcp and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                host, port = sock.getsockname()[:2]
                found.append((host, port))
    return sorted(set(found))


def names_this_machine(host: str, listening_hosts: set[str]) -> bool:
    if host.lower() in LOCAL_NAMES or host in listening_hosts:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a public name: a proxy may well forward it to whichever port we listen on
    return address.is_loopback or address.is_unspecified


def public_url_mismatch(public_base_url: str, sockets: list[tuple[str, int]]) -> bool:
    """True when PUBLIC_BASE_URL names this machine, but a port none of our sockets listens on."""
    parts = urlsplit(public_base_url)
    if not sockets or not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not names_this_machine(parts.hostname, {host for host, _ in sockets}):
        return False
    return port not in {listening_port for _, listening_port in sockets}


async def warn_if_public_url_is_elsewhere(settings: Settings) -> None:
    """Run at start-up: once the server's sockets exist, compare them with PUBLIC_BASE_URL."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SOCKETS_WAIT_SECONDS
    while not (sockets := listening_sockets()) and loop.time() < deadline:
        await asyncio.sleep(SOCKETS_POLL_SECONDS)
    if public_url_mismatch(settings.public_base_url, sockets):
        listening = [
            f"{urlsplit(settings.public_base_url).scheme or 'http'}://{_url_host(host)}:{port}" for host, port in sockets
        ]
        log.warning(
            "public_base_url_not_where_server_listens",
            public_base_url=settings.public_base_url,
            listening=listening,
            hint="set PUBLIC_BASE_URL to the address callers and Twilio reach this server at",
        )
