"""Host-pattern regexes (``~web0[1-3]``) come from the caller, a model that may have been steered:
one like ``~(.|.|.)*!`` backtracks for ages over a 21-character host name, and the controller
matching it is one process serving every client. So a host regex may only repeat what cannot
backtrack into itself: no repetition inside a repetition, no alternation inside one, no
backreference, and at most MAX_REPEATS variable repetitions in all (each multiplies the work by
a host name's length). What Ansible users write (``~web0[1-3]``, ``~(web|db)\\d+$``,
``~^prod-.*-db$``) passes.
"""

from __future__ import annotations

import re
from typing import Any

sre: Any = re._parser  # type: ignore[attr-defined]  # the stdlib's own parse of a pattern (3.11+)

MAX_REPEATS = 3
MAX_LENGTH = 200
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


def problem(expr: str) -> str | None:
    """Why `expr` may take too long to match, or None."""
    if len(expr) > MAX_LENGTH:
        return f"over {MAX_LENGTH} characters"
    try:
        parsed = sre.parse(expr)
    except re.error:
        return None  # compiling it reports the error
    found: list[str] = []
    repeats = _walk(list(parsed), inside=None, found=found)
    if found:
        return found[0]
    if repeats > MAX_REPEATS:
        return f"{repeats} variable repetitions (at most {MAX_REPEATS})"
    return None


def _walk(items: list[tuple[Any, Any]], inside: str | None, found: list[str]) -> int:
    """Variable repetitions in items; what is refused goes into found."""
    count = 0
    for op, av in items:
        if op in (sre.GROUPREF, sre.GROUPREF_EXISTS, sre.GROUPREF_IGNORE, sre.GROUPREF_LOC_IGNORE):
            found.append("a backreference")
        elif op in _REPEATS and av[1] <= 1 and inside is None:  # x? alone tries x once
            count += _walk(list(av[2]), inside, found)
        elif op in _REPEATS:
            low, high, body = av
            if inside is not None:
                found.append(f"a repetition inside {inside}")
            count += int(low != high) + _walk(list(body), "a repetition", found)
        elif op is sre.BRANCH:
            if inside is not None:
                found.append(f"an alternation (|) inside {inside}")
            count += sum(_walk(list(branch), inside, found) for branch in av[1])
        elif op is sre.SUBPATTERN:
            count += _walk(list(av[-1]), inside, found)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            count += _walk(list(av[1]), inside, found)
        elif op is sre.ATOMIC_GROUP:
            count += _walk(list(av), inside, found)
    return count
