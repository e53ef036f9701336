"""Folding and merging CPU profiles, on three rig hosts' real profiles (tests/unit/data/README.md):
web01 and web02 sampled this machine together (mostly idle), then web03 alone while dd copied
/dev/zero to /dev/null under the name "dd;x,\\n    y+1". The figures below were worked out by
hand from the files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

import pytest

from crashfleet.agent import protocol
from crashfleet.agent.profile import fold, read_counts
from crashfleet.controller.tools.profile_merge import find_outliers, merge_profiles, shown, stack_counts

DATA = Path(__file__).parent / "data"
HOSTS = ("web01", "web02", "web03")
DD = "dd_x,_____y+1"  # the burner's comm, folded: ';' and whitespace become '_', the comma stays
READ_ZERO = f"{DD};entry_SYSCALL_64_after_hwframe;do_syscall_64;ksys_read;vfs_read;read_zero"
IDLE = (
    "swapper/0;common_startup_64;x86_64_start_kernel;__pfx_clear_bss;start_kernel;rest_init;"
    "cpu_startup_entry;do_idle;cpuidle_enter;cpuidle_enter_state;default_enter_idle;default_idle;"
    "pv_native_safe_halt"
)
OFFSET = re.compile(r"\+(0x[0-9a-f]+|\d+)$")


@pytest.fixture
def answers() -> dict[str, protocol.ProfileStatus]:
    """Each host's profile.start answer, as its agent sent it (top 25 stacks)."""
    loaded = {h: json.loads((DATA / f"profile-{h}.json").read_text()) for h in HOSTS}
    for host, answer in loaded.items():
        answer["folded_output_id"] = f"f0{host[-1]}"
    return cast(dict[str, protocol.ProfileStatus], loaded)


# -- the agent's folding, on bpftrace's raw output -------------------------------------------------


def test_raw_keys_fold_into_flamegraph_stacks() -> None:
    counts = read_counts(str(DATA / "profile-raw-web03.jsonl"))
    assert len(counts) == 51 and sum(counts.values()) == 396
    folded = fold(counts)
    assert len(folded) == 34 and sum(folded.values()) == 396
    # read_zero sampled at 9 offsets (+119 94 times, +114 16, +127 6, +159 5, +136 3, +5 3, +168, +37, +55)
    assert folded[READ_ZERO] == 130
    assert folded[f"{DD};entry_SYSCALL_64_after_hwframe;do_syscall_64"] == 24  # +70 23 times, +118 once
    assert folded[f"{DD};[user]"] == 18  # no kernel stack: the sample was in user space
    ours = {stack: n for stack, n in folded.items() if stack.startswith(DD + ";")}
    assert len(ours) == 14 and sum(ours.values()) == 198  # 31 raw keys; dd had one of the two CPUs
    # "\n    y+1" in the comm stays in the comm: never a frame
    assert all(s.split(";")[1] in ("entry_SYSCALL_64_after_hwframe", "[user]") for s in ours), ours
    for stack in folded:
        assert not any(OFFSET.search(frame) for frame in stack.split(";")[1:]), stack
        assert re.fullmatch(r"[^;\s]+(;[^;\s]+)+", stack), stack


def test_the_agents_answer_is_its_fold_ranked(answers: dict[str, protocol.ProfileStatus]) -> None:
    folded = fold(read_counts(str(DATA / "profile-raw-web03.jsonl")))
    ranked = sorted(folded.items(), key=lambda kv: (-kv[1], kv[0]))[:25]
    sent = answers["web03"]
    assert [(t["stack"], t["count"]) for t in sent["top"]] == ranked
    assert (sent["samples"], sent["stacks"], sent["hz"]) == (396, 34, 99)


def test_fold_takes_perf_offsets_and_skips_what_is_not_a_count() -> None:
    counts: dict[str, Any] = {
        "kworker/0:1,\n    worker_thread+0x1a2\n    kthread+0xfe\n": 2,
        "kworker/0:1,\n    worker_thread+418\n    kthread+254\n": 3,
        "bad,\n    f+1\n": "7",
        "zero,\n    f+1\n": 0,
        ",\n    f+1\n": 1,
    }
    assert fold(counts) == {"kworker/0:1;kthread;worker_thread": 5, "[unknown];f": 1}


# -- merging the hosts' answers ----------------------------------------------------------------------


def test_fleet_stacks_sum_hosts_with_shares_of_all_samples(answers: dict[str, protocol.ProfileStatus]) -> None:
    merged = merge_profiles(answers)
    assert merged.samples == 311 + 309 + 396 == 1016
    assert merged.stack_count == 63  # distinct stacks in the three tops
    top = [(s.stack, s.samples, s.share, s.hosts, s.host_count) for s in merged.stacks[:4]]
    assert top == [
        (IDLE, 148 + 142, 0.2854, "web[01-02]", 2),  # web03 sampled while both CPUs were busy
        ("python;[user]", 30 + 27 + 175, 0.2283, "web[01-03]", 3),
        (READ_ZERO, 130, 0.128, "web03", 1),
        ("crashfleet;[user]", 62 + 48 + 1, 0.1093, "web[01-03]", 3),
    ]
    assert len(merged.stacks) == 20
    figures = [(h.host, h.samples, h.stacks, h.top_stack, h.top_share, h.output_id) for h in merged.per_host]
    assert figures == [
        ("web01", 311, 42, IDLE, 0.4759, "web01:f01"),
        ("web02", 309, 58, IDLE, 0.4595, "web02:f02"),
        ("web03", 396, 34, "python;[user]", 0.4419, "web03:f03"),
    ]
    # the tops hold 294 + 276 + 387 of the 1016 samples
    assert merged.note == (
        "59 samples (5.8%) are in stacks past each host's top and count in the totals only: "
        "a host's output_id holds all its stacks"
    )


def test_the_busy_host_stands_out(answers: dict[str, protocol.ProfileStatus]) -> None:
    merged = merge_profiles(answers)
    found = [(o.host, o.stack, o.share, o.others_share) for o in merged.outliers]
    assert found == [
        ("web03", "python;[user]", 0.4419, 0.0919),  # 175/396 against (30+27)/(311+309): 0.350 more
        ("web03", READ_ZERO, 0.3283, 0.0),  # 130/396 against none: 0.328 more
    ]
    assert merged.outliers[1].why == "33% of its 396 samples in this stack, 0.0% of the other hosts' 620"
    # Nobody else: web01's crashfleet;[user] (62/311 = 19.9%) is under 3 times the others' (48+1)/705
    # = 6.95%, its idle stack (148/311 = 47.6%) under 3 times 142/705 = 20.1%; web02's likewise.


def test_no_outliers_without_a_fleet_or_samples(answers: dict[str, protocol.ProfileStatus]) -> None:
    assert merge_profiles({"web03": answers["web03"]}).outliers == []
    few = dict(answers["web03"], samples=19)  # under MIN_SAMPLES: not judged
    counts = stack_counts({"web01": answers["web01"], "web03": cast(protocol.ProfileStatus, few)})
    assert "web03" not in {o.host for o in find_outliers(counts, {"web01": 311, "web03": 19})}
    empty = merge_profiles({"web01": answers["web01"], "web09": cast(protocol.ProfileStatus, {"samples": 0})})
    assert "no samples from web09" in (empty.note or "")


def test_long_stacks_are_shown_with_their_middle_elided() -> None:
    assert shown(IDLE) == IDLE  # 198 chars: whole
    cut = shown(IDLE, limit=120)
    assert len(cut) <= 120 and cut.startswith("swapper/0;common_startup_64;x86_64_start_kernel;[")
    assert cut.endswith(";default_enter_idle;default_idle;pv_native_safe_halt")
    assert cut == (
        "swapper/0;common_startup_64;x86_64_start_kernel;[7 frames];default_enter_idle;default_idle;pv_native_safe_halt"
    )
