"""The event loop a controller process runs on: uvloop where it is installed (a dependency on
Linux and macOS), else asyncio's own. A warm host-call is mostly event-loop and packet work:
uvloop takes ~15% off its controller CPU (bench/README.md, "The warm path")."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the fastest loop available."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
