"""A server of the local stack: how it is started, checked and stopped.

A Service knows its command line (built from cached artefacts), the services
it needs first, a health probe, and hooks around its start and stop (the real
node's containerd, for instance, removes its pods before it stops and puts the
host back as it was after).
"""

from __future__ import annotations

import socket
import ssl
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from .layout import HOST, Layout

Probe = Callable[[Layout], bool]
Hook = Callable[[Layout], None]


def _nothing(layout: Layout) -> None:
    return None


def _no_environment(layout: Layout) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Service:
    name: str
    component: str
    needs: tuple[str, ...]
    argv: Callable[[Layout], list[str]]
    probe: Probe
    prepare: Hook = _nothing
    after_start: Hook = _nothing  # once its process runs
    port: int | None = None  # must be free before start: a foreign server there is an error
    startup_seconds: float = 120.0
    data_dirs: tuple[str, ...] = field(default_factory=tuple)
    host: str = HOST  # where `port` is checked
    environment: Callable[[Layout], dict[str, str]] = _no_environment  # added to the process's
    before_stop: Hook = _nothing  # while it still runs (e.g. remove what it manages)
    after_stop: Hook = _nothing  # once it is gone (e.g. undo its changes to the host)

    def marker(self, layout: Layout) -> str:
        """A string unique to this service in this state directory, checked before signalling it."""
        return f"fink-stack/{self.name}@{layout.state}"


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False
