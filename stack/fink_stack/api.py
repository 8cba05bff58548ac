"""What tests and scripts call: bring the stack (or parts of it) up and down from Python."""

from __future__ import annotations

from collections.abc import Iterable

from . import stack
from .endpoints import Endpoints
from .layout import Layout
from .services import SERVICES


def ensure_up(
    components: Iterable[str] = stack.ALL_COMPONENTS, *, quiet: bool = False
) -> Endpoints:
    """Start whatever is not running yet and wait until everything answers."""
    return stack.up(Layout.default(), components, report=(lambda _: None) if quiet else print)


def is_up(components: Iterable[str] = stack.ALL_COMPONENTS) -> bool:
    wanted = set(components) - {"spark"}
    return all(s.healthy for s in stack.status(Layout.default()) if s.component in wanted)


def is_down() -> bool:
    """Nothing of the stack runs: whoever starts it now may also stop it all afterwards."""
    return not any(s.pid for s in stack.status(Layout.default()))


def stop_component(component: str) -> None:
    """Stop one component (e.g. to test an outage); its data is kept."""
    stack.down(Layout.default(), [component], report=lambda _: None)


def start_component(component: str) -> None:
    stack.up(Layout.default(), [component], report=lambda _: None)


def down(*, wipe: bool = False) -> None:
    stack.down(Layout.default(), wipe=wipe, report=lambda _: None)


def service_names(component: str) -> list[str]:
    return [s.name for s in SERVICES if s.component == component]
