"""Session-wide access to the real local stack.

The `stack` fixture starts whatever part of the stack is not running (building
it on first use, which takes minutes) and stops at the end only what it started
itself, so a stack a developer already runs is left as it was.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from fink_stack import api
from fink_stack.endpoints import Endpoints

# Spark would otherwise bind its driver to the first non-loopback interface
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def stack() -> Iterator[Endpoints]:
    # Stop at the end only a stack this session started from nothing: a stack that
    # merely looks unhealthy (another session testing an outage) is not ours to stop.
    started_here = api.is_down()
    endpoints = api.ensure_up(quiet=True)
    yield endpoints
    if started_here and os.environ.get("FINK_STACK_KEEP") != "1":
        api.down()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses: tests share one stack and must not collide."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:30].strip("-")
    return f"{stem}-{uuid.uuid4().hex[:6]}"
