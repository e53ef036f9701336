"""The agent's domains: each module here declares one (bpftrace, capture, dumps, ...).

A declaration is cheap to import. The domain's code is imported at the first call of one of its
methods (NAME.method), so an agent that only says hello never pays for it. A new domain is one
module here: nothing else in the agent lists domains (CONTRIBUTING.md, "Adding a domain").
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set, Tuple

Handler = Callable[[Dict[str, Any]], Any]
AGENT_PACKAGE = __name__.rpartition(".")[0]


class Domain(NamedTuple):
    name: str  # its methods are NAME.method
    code: str  # the module with `methods(agent) -> {method: handler}`, relative to crashfleet.agent
    policy: Dict[str, Any] = {}  # the policy keys it adds, with their defaults
    tools: Dict[str, List[str]] = {}  # commands it runs: name -> argv that prints the version (facts)
    packages: Dict[str, List[str]] = {}  # OS family (Debian, RedHat) -> packages the role installs


@functools.lru_cache(maxsize=None)
def declared() -> Tuple[Domain, ...]:
    """Every domain in this package, by name."""
    found = [importlib.import_module("%s.%s" % (__name__, name)).DOMAIN for name in module_names()]
    return tuple(sorted(found, key=lambda domain: domain.name))


def module_names() -> List[str]:
    """The modules in this package. Not pkgutil.iter_modules: it imports inspect, ~6 ms of every
    agent start. Inside the zipapp, zipimport's own index of the archive is read (else pkgutil)."""
    names: Set[str] = set()
    for path in __path__:
        if os.path.isdir(path):
            entries = os.listdir(path)
        else:
            archive = getattr(__spec__.loader, "archive", None)
            index = getattr(__spec__.loader, "_files", None)
            if not archive or index is None or not path.startswith(archive + os.sep):
                return sorted(m.name for m in pkgutil.iter_modules(__path__))
            prefix = path[len(archive) + 1 :].replace(os.sep, "/") + "/"
            entries = [name[len(prefix) :] for name in index if name.startswith(prefix)]
        names.update(e[:-3] for e in entries if e.endswith(".py") and "/" not in e and not e.startswith("_"))
    return sorted(names)


def owner(method: str) -> Domain:
    """The domain serving a method (KeyError: none does)."""
    prefix = method.partition(".")[0]
    for domain in declared():
        if domain.name == prefix:
            return domain
    raise KeyError(method)


def load(domain: Domain, agent: Any) -> Dict[str, Handler]:
    """The domain's handlers (its code imported now, not before); each must be NAME.something."""
    handlers: Dict[str, Handler] = importlib.import_module(domain.code, AGENT_PACKAGE).methods(agent)
    stray = [name for name in handlers if not name.startswith(domain.name + ".")]
    if stray:
        raise ValueError("domain %s serves methods outside its prefix: %s" % (domain.name, ", ".join(stray)))
    return handlers


def policy_defaults(core: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The domains' policy keys (with `core`, added to it); a key declared twice is an error."""
    merged: Dict[str, Any] = dict(core or {})
    for domain in declared():
        taken = set(merged) & set(domain.policy)
        if taken:
            raise ValueError("domain %s redeclares policy keys: %s" % (domain.name, ", ".join(sorted(taken))))
        merged.update(domain.policy)
    return merged


def tools() -> Dict[str, List[str]]:
    merged: Dict[str, List[str]] = {}
    for domain in declared():
        merged.update(domain.tools)
    return merged


def packages(family: str) -> List[str]:
    """Each package once, in the domains' order (two domains may need the same one)."""
    return list(dict.fromkeys(package for domain in declared() for package in domain.packages.get(family, [])))
