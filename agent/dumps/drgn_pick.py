"""Which drgn the agent uses: the interpreter, its drgn's version and features, and why.

Distributions ship old drgn (Debian 12: 0.0.22) that cannot walk the page tables
of many dumps, so a drgn is only picked when it is recent enough; the policy's
`drgn_python` always wins. Probing costs a Python start each: cached per path.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

from .. import profiles, sandbox

# drgn < 0.0.30 fails every page-table walk on dumps whose VMCOREINFO has phys_base 0, as
# QEMU's have ("recursive address translation"; drgn PR #457). PINNED is what we install.
MIN_VERSION = "0.0.30"
PINNED = "0.3.0"
VENV = "/opt/crashfleet/drgn"
INSTALL_HINT = (
    "install a current drgn from PyPI into its own venv: python3 -m venv %s && %s/bin/pip install "
    "drgn==%s (the Ansible role and `crashfleet bootstrap` do this); or point the policy key "
    "drgn_python at an interpreter that imports drgn >= %s" % (VENV, VENV, PINNED, MIN_VERSION)
)

_PROBE = (
    "import json, sys; paths = [sys.prefix, sys.base_prefix, sys.exec_prefix] + sys.path\n"
    "import drgn; print(json.dumps({'version': drgn.__version__, 'paths': paths, 'drgn': drgn.__file__,\n"
    "'libkdumpfile': bool(getattr(drgn, '_with_libkdumpfile', False))}))"
)


def version_key(version: str) -> Tuple[int, ...]:
    """0.0.22 < 0.0.30 < 0.3.0; a local suffix (+12.gabc) is ignored."""
    return tuple(int(n) for n in re.findall(r"\d+", version.split("+")[0])[:4])


def recent(version: Optional[str]) -> bool:
    return bool(version) and version_key(str(version)) >= version_key(MIN_VERSION)


def candidates(policy_python: Optional[str], venv: str = VENV) -> List[str]:
    """The policy's interpreter alone; else our own drgn venv (policy drgn_venv, where the role
    installs it), the system python3, the agent's."""
    if policy_python:
        return [policy_python]
    found = [os.path.join(venv, "bin", "python3"), shutil.which("python3", path="/usr/bin:/bin"), sys.executable]
    out: List[str] = []
    for path in found:
        if path and os.path.isfile(path) and path not in out:
            out.append(path)
    return out


@functools.lru_cache(maxsize=8)
def probe(python: str) -> Dict[str, Any]:
    """Whether `python` imports drgn, its version and libkdumpfile support, and the dirs it
    reads to do so (the worker's sandbox lets it read just those)."""
    try:
        proc = subprocess.run(
            [python, "-I", "-c", _PROBE],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            preexec_fn=sandbox.preexec(profiles.probe(), python),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"python": python, "importable": False, "error": str(exc)}
    if proc.returncode != 0:
        last = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
        return {"python": python, "importable": False, "error": last[0] if last else "exit %d" % proc.returncode}
    try:
        found = json.loads(proc.stdout.decode())
    except ValueError:
        return {"python": python, "importable": False, "error": "unreadable answer from %s" % python}
    paths = sorted(set(p for p in found["paths"] + [os.path.dirname(found["drgn"])] if p and os.path.isabs(p)))
    return {
        "python": python,
        "importable": True,
        "version": found["version"],
        "libkdumpfile": found["libkdumpfile"],
        "recent": recent(found["version"]),
        "paths": paths,
    }


def choose(policy_python: Optional[str], venv: str = VENV) -> Dict[str, Any]:
    """The drgn to use: the first recent one, else the newest old one (which may still read some
    dumps), else none; `others` says what else was looked at."""
    probed = [probe(python) for python in candidates(policy_python, venv)]
    usable = [p for p in probed if p["importable"]]
    good = [p for p in usable if p["recent"]]
    if good:
        best = good[0]
    elif usable:
        best = max(usable, key=lambda p: version_key(p["version"]))
    else:
        best = {
            "python": policy_python or (probed[0]["python"] if probed else sys.executable),
            "importable": False,
            "error": "; ".join("%s: %s" % (p["python"], p.get("error")) for p in probed) or "no python3 found",
            "hint": INSTALL_HINT,
        }
    chosen = dict(best, source="policy drgn_python" if policy_python else "found")
    if best.get("importable") and not best["recent"]:
        chosen["hint"] = "drgn %s is older than %s: %s" % (best["version"], MIN_VERSION, INSTALL_HINT)
    chosen["others"] = [_brief(p) for p in probed if p["python"] != best["python"]]
    return chosen


def public(chosen: Dict[str, Any]) -> Dict[str, Any]:
    """What facts and dumps_list show (no path lists)."""
    return {k: v for k, v in chosen.items() if k != "paths"}


def _brief(p: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "python": p["python"],
        "version": p.get("version"),
        "recent": p.get("recent", False),
        "error": p.get("error"),
    }


def too_old(chosen: Dict[str, Any], dump_format: Optional[str], error: str) -> Optional[str]:
    """When the chosen drgn failed on a dump and a newer one would read it: the message to give."""
    if not chosen.get("importable"):
        return None
    if not chosen.get("recent"):
        return "drgn %s (%s) cannot read this %s dump: %s. drgn >= %s reads it" % (
            chosen["version"],
            chosen["python"],
            dump_format,
            error,
            MIN_VERSION,
        )
    if dump_format in ("kdump-compressed", "flattened") and not chosen.get("libkdumpfile"):
        return (
            "drgn %s (%s) was built without libkdumpfile, so it cannot read %s dumps (%s); "
            "PyPI's drgn %s wheels include it" % (chosen["version"], chosen["python"], dump_format, error, PINNED)
        )
    return None
