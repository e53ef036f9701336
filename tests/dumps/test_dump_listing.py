"""dumps_list at 500 hosts stays one page: a real agent's listing of a kdump-tools dump dir, as 500
hosts would answer it (their own IP-and-time dir names, sizes and times), grouped as dumps_list does."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from crashfleet.controller.grouping import group_outcomes
from crashfleet.controller.tools import dump_listing
from crashfleet.inventory import Host
from tests.dumps.agentproc import spawn
from tests.dumps.crash_kinds import ensure_kinds
from tests.dumps.crash_scenes import Scene, lay_out

PAGE_CHARS = 16_000  # the default page budget: 4,000 tokens
HOSTS = 500


def answer_of(zipapp: Path, tmp_path: Path) -> dict[str, object]:
    lay_out(Scene("kdump-dmesg", "null_deref"), tmp_path / "crash", ensure_kinds())
    agent = spawn(zipapp, tmp_path, {"drgn_python": sys.executable}, tmp_path / "crash")
    try:
        return agent.result("dumps.list")
    finally:
        agent.stop()


def as_host(real: dict[str, object], i: int, release: str) -> tuple[Host, dict[str, object]]:
    """The listing host i would give: its address and crash time in the dir's name, its own size."""
    host = Host(f"web{i:03d}", {"ansible_host": f"10.0.{i // 250}.{i % 250 + 1}"}, [])
    listing = copy.deepcopy(real)
    for dump in listing["dumps"]:  # type: ignore[attr-defined]
        stamp = f"{host.address}-2026-12-{1 + i % 28:02d}-0{i % 10}:1{i % 6}:3{i % 7}"
        dump["path"] = f"/var/crash/{stamp}/vmcore"
        dump["dmesg"]["path"] = f"/var/crash/{stamp}/vmcore-dmesg.txt"
        dump["size"] += i * 4096
        dump["mtime"] -= i * 60
        dump["release"] = release
    return host, listing


def test_500_hosts_with_the_same_bug_are_one_group_within_a_page(zipapp: Path, tmp_path: Path) -> None:
    real = answer_of(zipapp, tmp_path)
    release = str(real["dumps"][0]["release"])  # type: ignore[index]
    outcomes = [dump_listing.outcome(*as_host(real, i, release)) for i in range(HOSTS)]  # type: ignore[arg-type]
    result = group_outcomes(outcomes, 0, PAGE_CHARS, merge=dump_listing.merge)
    [group] = result.groups
    assert group.count == HOSTS and group.hosts == f"web[000-{HOSTS - 1}]"
    assert "/var/crash/{host}-{time}/vmcore" in (group.output or ""), group.output
    assert "BUG: kernel NULL pointer dereference in cfx_flush_ring [cfx_ring]" in (group.output or "")
    assert group.data and group.data["size_mib"][0] <= group.data["size_mib"][1], group.data
    assert len(result.model_dump_json()) < PAGE_CHARS


def test_500_hosts_on_five_kernels_are_five_groups_within_a_page(zipapp: Path, tmp_path: Path) -> None:
    real = answer_of(zipapp, tmp_path)
    releases = [f"6.1.0-{n}-cloud-amd64" for n in (53, 54, 55, 56, 57)]
    outcomes = [dump_listing.outcome(*as_host(real, i, releases[i % 5])) for i in range(HOSTS)]  # type: ignore[arg-type]
    result = group_outcomes(outcomes, 0, PAGE_CHARS, merge=dump_listing.merge)
    assert sorted(g.count for g in result.groups) == [100] * 5
    assert len(json.dumps(result.model_dump(mode="json"))) < PAGE_CHARS


def test_a_single_host_sees_its_own_paths(zipapp: Path, tmp_path: Path) -> None:
    real = answer_of(zipapp, tmp_path)
    host, listing = as_host(real, 7, str(real["dumps"][0]["release"]))  # type: ignore[index]
    result = group_outcomes([dump_listing.outcome(host, listing)], 0, PAGE_CHARS, merge=dump_listing.merge)  # type: ignore[arg-type]
    assert result.groups[0].data["dumps"][0]["path"] == listing["dumps"][0]["path"]  # type: ignore[index]
