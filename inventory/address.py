"""Ansible's host-address grammar: host names, IPv4/IPv6, ranges and ports.

Ported from ``ansible.parsing.utils.addresses`` because both host definitions
(``web[01:04]:2222``) and pattern splitting (``2001:db8::1`` is one term, not
three) depend on exactly where Ansible draws the line.
"""

from __future__ import annotations

import re

_NUMERIC_RANGE = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_HEX_RANGE = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"

_V6 = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
_V4 = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUMERIC_RANGE})"
_LABEL = rf"(?:[\w]|{_ALNUM_RANGE})(?:[\w_-]|{_ALNUM_RANGE})*(?<![_-])"

_BRACKETED_HOSTPORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOSTPORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_IPV4 = re.compile(rf"^(?:{_V4}\.){{3}}{_V4}$", re.I)
_IPV6 = re.compile(
    rf"""^(
        (?:{_V6}:){{7}}{_V6}|
        (?:{_V6}:){{1,6}}:|
        (?:{_V6}:)(?::{_V6}){{1,6}}|
        (?:{_V6}:){{2}}(?::{_V6}){{1,5}}|
        (?:{_V6}:){{3}}(?::{_V6}){{1,4}}|
        (?:{_V6}:){{4}}(?::{_V6}){{1,3}}|
        (?:{_V6}:){{5}}(?::{_V6}){{1,2}}|
        (?:{_V6}:){{6}}(?::{_V6})|
        :(?::{_V6}){{1,6}}|
        {_V6}?::|
        (?:0:){{6}}(?:{_V6}\.){{3}}{_V6}|
        ::(?:ffff:)?(?:{_V6}\.){{3}}{_V6}|
        (?:0:){{5}}ffff:(?:{_V6}\.){{3}}{_V6}
    )$""",
    re.X | re.I,
)
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I)


def parse_address(text: str) -> tuple[str, int | None]:
    """Split ``text`` into (host, port); ranges are allowed in the host part.

    Raises ValueError when the text is not a host identifier at all.
    """
    address, port = text, None
    for pattern in (_BRACKETED_HOSTPORT, _HOSTPORT):
        m = pattern.match(address)
        if m:
            address, port = m.group(1), int(m.group(2))
    if not any(p.match(address) for p in (_IPV4, _IPV6, _HOSTNAME)):
        raise ValueError(f"not a valid network hostname: {address}")
    return address, port


def is_ip_literal(name: str) -> bool:
    """Whether ``name`` is an IPv4/IPv6 address (Ansible keeps it whole as the short name)."""
    return bool(_IPV4.match(name) or _IPV6.match(name))
