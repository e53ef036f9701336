"""The loaded modules' debuginfo for crash (crash_open modules=true), by build id over debuginfod.

drgn lists the dump's modules with the build ids their memory carries; each file is fetched
like the vmlinux (same cache, quota, sandbox, removal of partial or wrong files); only then
crash starts, with those files in its read set (Landlock rules are fixed at start), and the
agent runs `mod -s NAME FILE` for each (crash_session). Not `mod -S DIR`: crash looks for
NAME.ko under DIR with popen("/usr/bin/find DIR -name ...") (filesys.c search_directory_tree),
a shell the sandbox does not let it start; the cache's files are <build id>/debuginfo anyway.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Dict, List, Optional, Tuple

from ..errors import AgentError
from .debuginfod import valid_build_id

# drgn >= 0.0.31 (its module API); the worker's namespace has prog and drgn.
LIST_CODE = (
    "import json\n"
    "print(json.dumps([[m.name, m.build_id.hex() if m.build_id else None]\n"
    "                  for m, _ in prog.loaded_modules() if isinstance(m, drgn.RelocatableModule)]))\n"
)
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")  # what reaches crash's command line: nothing else
Listed = List[Tuple[str, Optional[str]]]


def parse(answer: Dict[str, Any]) -> Listed:
    """LIST_CODE's answer: [(name, build id or None)]; ValueError saying why when drgn failed."""
    if not answer.get("ok"):
        lines = (answer.get("stderr") or "").strip().splitlines()
        raise ValueError(lines[-1] if lines else "the listing failed")
    return [(str(name), str(bid) if bid else None) for name, bid in json.loads(answer.get("stdout") or "[]")]


class Plan:
    """A session's modules: listed once, then fetched one by one over as many opens as it takes."""

    def __init__(self, listed: Listed) -> None:
        # Names reach crash's command line and build ids name cache dirs: both from the dump's memory.
        self.todo = [(name, bid) for name, bid in listed if valid_build_id(bid) and NAME.match(name)]
        self.files: List[Tuple[str, str]] = []  # (name, debuginfo path) for crash's `mod -s`
        self.notes = [
            "module %r: %s"
            % (name[:80], "no usable build id in the dump" if not valid_build_id(bid) else "name not usable")
            for name, bid in listed
            if not valid_build_id(bid) or not NAME.match(name)
        ]

    def advance(self, debuginfod: Any, servers: List[str], wait: float) -> Optional[Dict[str, Any]]:
        """Fetch what is left within `wait` seconds: None when all are done, else the running
        fetch's status. A module the servers do not have is noted; any other failure raises,
        naming the module."""
        deadline = time.monotonic() + wait
        while self.todo:
            name, bid = self.todo[0]
            try:
                got = debuginfod.waited(str(bid), servers, deadline - time.monotonic())
            except AgentError as exc:
                if not exc.extra.get("absent"):
                    raise AgentError(
                        exc.kind, "module %s (build id %s): %s" % (name, bid, exc.message), hint=exc.hint, module=name
                    ) from None
                self.notes.append("module %r: not on the debuginfod servers (%s)" % (name, exc.message))
                got = None
            if isinstance(got, dict):
                return dict(got, module=name, what="module %s" % name, modules_left=len(self.todo))
            if got is not None:
                self.files.append((name, str(got)))
            self.todo.pop(0)
        return None
