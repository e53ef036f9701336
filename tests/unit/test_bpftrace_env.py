"""bpftrace's limits are pinned under every environment name any release reads (v0.17 .. master).

The names come from bpftrace's sources, extracted into data/bpftrace_env.txt by
data/bpftrace_env.py (the test machine has no bpftrace source).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crashfleet.agent.bpftrace import UNPINNED_ENV, pinned_env
from crashfleet.agent.policy import DEFAULTS

DATA = Path(__file__).parent / "data" / "bpftrace_env.txt"
RENAMED = [
    ("BPFTRACE_STRLEN", "BPFTRACE_MAX_STRLEN"),
    ("BPFTRACE_MAP_KEYS_MAX", "BPFTRACE_MAX_MAP_KEYS"),
    ("BPFTRACE_CAT_BYTES_MAX", "BPFTRACE_MAX_CAT_BYTES"),
    ("BPFTRACE_NODE_MAX", "BPFTRACE_MAX_AST_NODES"),
    ("BPFTRACE_NO_CPP_DEMANGLE", "BPFTRACE_CPP_DEMANGLE"),
]


def source_names() -> dict[str, tuple[str, str]]:
    """name -> (first, last release it appears in)."""
    rows = [line.split() for line in DATA.read_text().splitlines() if line and not line.startswith("#")]
    return {name: (first, last) for name, first, last in rows}


def test_the_list_spans_0_17_to_the_newest_source() -> None:
    names = source_names()
    assert len(names) > 40
    assert names["BPFTRACE_STRLEN"][0] == "v0.17.0" and names["BPFTRACE_MAX_STRLEN"] == ("v0.20.0", "master")
    assert {last for _first, last in names.values()} >= {"master", "v0.19.1"}


def test_every_name_is_pinned_or_left_unset_for_a_reason() -> None:
    pinned = pinned_env(DEFAULTS)
    uncovered = sorted(set(source_names()) - set(pinned) - set(UNPINNED_ENV))
    assert uncovered == [], "pin these in agent/bpftrace.py pinned_env() or say why not in UNPINNED_ENV"
    assert not set(pinned) & set(UNPINNED_ENV)
    assert all(reason for reason in UNPINNED_ENV.values())


@pytest.mark.parametrize("old, new", RENAMED)
def test_old_and_new_names_carry_the_same_value(old: str, new: str) -> None:
    pinned = pinned_env(DEFAULTS)
    if old == "BPFTRACE_NO_CPP_DEMANGLE":  # renamed and inverted
        assert (pinned[old], pinned[new]) == ("0", "1")
    else:
        assert pinned[old] == pinned[new]


def test_limits_follow_the_policy() -> None:
    pinned = pinned_env(dict(DEFAULTS, bpftrace_strlen=100, bpftrace_map_keys_max=77, bpftrace_max_probes=9))
    assert pinned["BPFTRACE_STRLEN"] == pinned["BPFTRACE_MAX_STRLEN"] == "100"
    assert pinned["BPFTRACE_MAP_KEYS_MAX"] == pinned["BPFTRACE_MAX_MAP_KEYS"] == "77"
    assert pinned["BPFTRACE_MAX_PROBES"] == pinned["BPFTRACE_MAX_BPF_PROGS"] == "9"
    assert pinned["BPFTRACE_CAT_BYTES_MAX"] == pinned["BPFTRACE_MAX_CAT_BYTES"] == "1"
