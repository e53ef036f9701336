"""Ansible host-pattern selection (``web:&prod:!web03``, ``db[0]``, ``~web0[1-3]``).

Mirrors ``ansible.inventory.manager``: plain terms are unioned first, then
``&`` terms intersect, then ``!`` terms remove; a term that names a group
yields the group's hosts breadth-first through its children, which is also
the order subscripts index into.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from . import regexsafe
from .address import parse_address
from .errors import PatternError

if TYPE_CHECKING:
    from .model import Group

LOCALHOST_NAMES = ("127.0.0.1", "localhost", "::1")
_GLOB_CHARS = (".", "?", "*", "[")
_COLON_TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")

Subscript = tuple[int, int | None]


def select(pattern: str, hosts: Sequence[str], groups: Mapping[str, Group]) -> list[str]:
    """Names of the hosts ``pattern`` selects; raises PatternError if none."""
    terms = split_pattern(pattern)
    if not terms:
        raise PatternError(f"empty host pattern {pattern!r}")
    resolver = _Resolver(hosts, groups)
    selected = _dedupe(resolver.evaluate(order_terms(terms)))
    if not selected:
        raise PatternError(_no_match_message(pattern, resolver, hosts, groups))
    return selected


def split_pattern(pattern: str) -> list[str]:
    """Split on ',' (preferred) or ':', keeping IPv6 addresses and [x:y] whole."""
    if "," in pattern:
        parts = pattern.split(",")
    else:
        try:
            parse_address(pattern)
            parts = [pattern]
        except ValueError:
            parts = _COLON_TERM.findall(pattern)
    return [p.strip() for p in parts if p.strip()]


def order_terms(terms: list[str]) -> list[str]:
    """Plain terms first, then '&' terms, then '!' terms; no plain term means 'all'."""
    plain = [t for t in terms if t[0] not in "&!"]
    return (plain or ["all"]) + [t for t in terms if t[0] == "&"] + [t for t in terms if t[0] == "!"]


class _Resolver:
    """Evaluates terms against one inventory, remembering terms that matched nothing."""

    def __init__(self, hosts: Sequence[str], groups: Mapping[str, Group]) -> None:
        self.hosts = list(hosts)
        self.host_set = set(hosts)
        self.groups = groups
        self.unmatched: list[str] = []
        self._localhost = next((h for h in self.hosts if h in LOCALHOST_NAMES), None)
        self._group_cache: dict[str, list[str]] = {}

    def evaluate(self, terms: list[str]) -> list[str]:
        selected: list[str] = []
        for term in terms:
            if term in self.host_set:
                selected.append(term)
                continue
            matched = self.match_term(term)
            if term[0] in "!&":
                keep = term[0] == "&"
                wanted = set(matched)
                selected = [h for h in selected if (h in wanted) == keep]
            else:
                seen = set(selected)
                selected.extend(h for h in matched if h not in seen)
        return selected

    def match_term(self, term: str) -> list[str]:
        """Hosts for one term, ignoring its '&'/'!' prefix; duplicates kept, as in Ansible."""
        bare = term[1:] if term[0] in "&!" else term
        if not bare:
            raise PatternError(f"{term!r} must be followed by a pattern")
        expr, subscript = split_subscript(bare)
        found = self.enumerate(expr)
        if not found and expr != "all":
            self.unmatched.append(bare)
        return apply_subscript(found, subscript, bare)

    def enumerate(self, expr: str) -> list[str]:
        matcher = _compile(expr)
        found: list[str] = []
        matching_groups = [g for g in self.groups if matcher.match(g)]
        for group in matching_groups:
            found.extend(self.group_hosts(group))
        if not matching_groups or expr[0] == "~" or any(c in expr for c in _GLOB_CHARS):
            found.extend(h for h in self.hosts if matcher.match(h))
        if not found and expr in LOCALHOST_NAMES:
            self._localhost = self._localhost or expr
            found.append(self._localhost)
        return found

    def group_hosts(self, name: str) -> list[str]:
        """Members of a group and its descendants, breadth-first, first occurrence wins."""
        if name not in self._group_cache:
            members = (h for g in _descendants(name, self.groups) for h in self.groups[g].hosts)
            self._group_cache[name] = _dedupe(list(members))
        return self._group_cache[name]


def split_subscript(pattern: str) -> tuple[str, Subscript | None]:
    """Separate a trailing ``[i]`` / ``[i:j]`` / ``[i:]``; regexes never carry one."""
    m = None if pattern.startswith("~") else _SUBSCRIPT.match(pattern)
    if not m:
        return pattern, None
    expr, index, start, _sep, end = m.groups()
    if index:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


def apply_subscript(hosts: list[str], subscript: Subscript | None, term: str) -> list[str]:
    """Ansible's subscripts: [i] is one host, [i:j] is inclusive, [i:] runs to the end."""
    if not hosts or subscript is None:
        return hosts
    start, end = subscript
    if end:
        last = len(hosts) - 1 if end == -1 else end
        return hosts[start : last + 1]
    try:
        return [hosts[start]]
    except IndexError:
        raise PatternError(f"subscript in {term!r} is out of range ({len(hosts)} hosts)") from None


def _descendants(name: str, groups: Mapping[str, Group]) -> list[str]:
    ordered, seen, level = [name], {name}, [name]
    while level:
        following: list[str] = []
        for group in level:
            for child in groups[group].children:
                if child not in seen and child in groups:
                    seen.add(child)
                    following.append(child)
        ordered.extend(following)
        level = following
    return ordered


def _compile(expr: str) -> re.Pattern[str]:
    """'~' starts a regex matched from the name's start (re.match); else a shell glob (which
    fnmatch translates to a regex that does not backtrack). A regex that could take exponential
    time is refused (regexsafe)."""
    why = regexsafe.problem(expr[1:]) if expr.startswith("~") else None
    if why:
        raise PatternError(
            f"host pattern {expr!r} is refused: {why}; such a regex can take exponential time to match "
            "(repeat single characters or classes, as in ~web0[1-3] or ~(web|db)[0-9]+$)"
        )
    try:
        return re.compile(expr[1:] if expr.startswith("~") else fnmatch.translate(expr))
    except re.error as exc:
        raise PatternError(f"invalid host pattern {expr!r}: {exc}") from None


def _dedupe(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _no_match_message(pattern: str, resolver: _Resolver, hosts: Sequence[str], groups: Mapping[str, Group]) -> str:
    culprits = ", ".join(repr(t) for t in _dedupe(resolver.unmatched))
    detail = f" (nothing matched {culprits})" if culprits else ""
    examples = ", ".join(list(hosts)[:3]) + ("..." if len(hosts) > 3 else "")
    hint = f" (and host names such as {examples})" if hosts else " (the inventory has no hosts)"
    return f"pattern {pattern!r} matches no host{detail}; groups: {', '.join(sorted(groups))}{hint}"
