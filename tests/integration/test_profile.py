"""CPU profiles across the rig on this machine's real kernel: merged kernel stacks, jobs, refusals.

The rig's hosts share this machine's CPUs, so each host samples the same kernel: a kernel-bound
process the test starts (dd from /dev/zero, under its own comm) shows on every host. The agent's
own checks (numbers, caps, program text) are also asked of a real agent on pipes (the zipapp,
with its policy file), as an attacker would speak to it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent import protocol
from crashfleet.controller.errors import UsageError
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.tools.jobs import job_cancel, job_status
from crashfleet.controller.tools.output import output_page, output_search
from crashfleet.controller.tools.profile import profile_result, profile_run
from tests.agentproc import PolicyAgent
from tests.helpers import cwd, pids_matching
from tests.integration.test_bpftrace import tracers
from tests.rig import Rig

THREE = "web01:web02:web03"
FOLDED_LINE = re.compile(r"^[^;\s]+(;[^;\s]+)+ \d+$")  # comm;frame;...;frame COUNT
OFFSET = re.compile(r"\+(0x[0-9a-f]+|\d+)(;| )")


@pytest.fixture
def burner(tmp_path: Path) -> Iterator[str]:
    """dd copying /dev/zero to /dev/null (nearly all of it in the kernel), under a comm of its own."""
    comm = "cfp" + uuid.uuid4().hex[:8]
    exe = tmp_path / comm
    shutil.copy(shutil.which("dd") or "/bin/dd", exe)
    proc = subprocess.Popen([str(exe), "if=/dev/zero", "of=/dev/null", "bs=64k"], stderr=subprocess.DEVNULL)
    yield comm
    proc.kill()
    proc.wait()


async def all_lines(runtime: Runtime, output_id: str) -> list[str]:
    """Every line of an output, page after page."""
    page = await output_page(runtime, output_id)
    lines = page.text.splitlines()
    while page.next_cursor:
        page = await output_page(runtime, output_id, page.next_cursor)
        lines += page.text.splitlines()
    return lines


async def test_run_on_three_hosts_merges_real_kernel_stacks(rig: Rig, runtime: Runtime, burner: str) -> None:
    result = await profile_run(runtime, THREE, duration=2, hz=99)
    assert result.summary.ok == 3 and not result.job_id and result.profile, result
    profile = result.profile
    [group] = result.groups
    assert group.hosts == "web[01-03]" and len(group.output_ids) == 3 and result.hz == 99
    assert {h.host for h in profile.per_host} == {"web01", "web02", "web03"}
    assert profile.samples == sum(h.samples for h in profile.per_host) > 0
    for stack in profile.stacks:
        assert FOLDED_LINE.match(f"{stack.stack} {stack.samples}") and not OFFSET.search(stack.stack + ";"), stack
        assert stack.share == round(stack.samples / profile.samples, 4)
    assert [s.samples for s in profile.stacks] == sorted((s.samples for s in profile.stacks), reverse=True)
    # The burner's read(2) of /dev/zero, root first, with the kernel's own frame names.
    ours = [s for s in profile.stacks if s.stack.startswith(burner + ";")]
    assert any(";vfs_read;read_zero" in s.stack and "entry_SYSCALL_64" in s.stack for s in ours), profile.stacks
    assert max(s.host_count for s in ours) == 3 and result.outlier_rule
    for host in profile.per_host:  # every host's folded stacks are an output: paged and searched
        assert host.output_id and host.output_id.startswith(host.host + ":") and host.stacks > 0
        lines = await all_lines(runtime, host.output_id)  # a busy machine has many stacks: several pages
        assert lines and all(FOLDED_LINE.match(line) for line in lines), lines[:5]
        assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == host.samples
        found = await output_search(runtime, host.output_id, rf"^{burner};.*;read_zero \d+$")
        assert found.matches, host
    assert tracers(rig) == []


async def test_long_run_becomes_a_job_read_by_profile_result(rig: Rig, runtime: Runtime) -> None:
    runtime.settings.command_wait = 1.0
    started = await profile_run(runtime, "web01:web02", duration=3)
    assert started.job_id and started.summary.running == 2 and started.profile is None, started
    assert "profile_result" in (started.note or "")
    done = await profile_result(runtime, started.job_id, wait=30)
    assert done.summary.ok == 2 and done.job_id == started.job_id, done
    assert done.profile and done.profile.samples > 0 and done.hz == 49 and done.duration == 3
    assert all(h.samples > 0 and h.top_stack for h in done.profile.per_host), done.profile.per_host
    assert (await job_status(runtime, started.job_id)).summary.ok == 2
    assert tracers(rig) == []


async def test_cancelled_profile_keeps_its_stacks(rig: Rig, runtime: Runtime) -> None:
    runtime.settings.command_wait = 1.0
    started = await profile_run(runtime, "web01:web02", duration=25)
    assert started.job_id and started.summary.running == 2, started
    refs = [ref for group in started.groups for ref in group.output_ids]
    for ref in refs:  # bpftrace's own output, until its probes are attached
        for _ in range(400):
            if "attached_probes" in (await output_page(runtime, ref)).text:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"bpftrace did not attach on {ref}")
    assert (await profile_result(runtime, started.job_id)).summary.running == 2
    await job_cancel(runtime, started.job_id)  # bpftrace prints its map on the way out
    result = await profile_result(runtime, started.job_id, wait=10)
    assert result.summary.ok == 2 and result.profile and result.profile.samples > 0, result
    assert tracers(rig) == []


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"hz": 0}, "parameter 'hz' must be between 1 and 999, got 0 (on web[01-02])"),
        ({"hz": 5000}, "parameter 'hz' must be between 1 and 999, got 5000 (on web[01-02])"),
        ({"duration": 31}, "duration 31s is over this host's profile cap of 30s (on web[01-02])"),
        ({"duration": 0}, "duration must be between 0 and 3600 s, got 0"),
        ({"duration": 7200}, "duration must be between 0 and 3600 s, got 7200"),
    ],
)
async def test_bad_numbers_are_tool_errors(rig: Rig, runtime: Runtime, kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError) as caught:
        await profile_run(runtime, "web01:web02", **kwargs)
    assert words in str(caught.value), caught.value
    assert tracers(rig) == []


async def test_profile_result_reads_only_profile_jobs(runtime: Runtime) -> None:
    with pytest.raises(UsageError, match="unknown job_id 'J999'"):
        await profile_result(runtime, "J999")
    other = runtime.jobs.add("bpftrace_run", "web01", {"web01": "j1-0000"})
    with pytest.raises(UsageError, match=f"job {other.job_id} is a bpftrace_run job, not profile_run"):
        await profile_result(runtime, other.job_id)
    mine = runtime.jobs.add("profile_run", "web01", {"web01": "j1-0000"}, hz=49, duration=5.0)
    with pytest.raises(UsageError, match="wait must be between 0 and 120 s, got 500"):
        await profile_result(runtime, mine.job_id, wait=500)
    gone = await profile_result(runtime, mine.job_id)  # web01's agent never ran it
    assert gone.summary.failed == 1 and "gone from web01" in gone.errors[0].message, gone


# -- the agent itself, on pipes: its policy caps and what it refuses ------------------------------------


def agent_tracers(agent: PolicyAgent) -> list[int]:
    return [pid for pid in pids_matching("bpftrace") if cwd(pid).startswith(str(agent.dir))]


def bpftrace_argvs(agent: PolicyAgent) -> list[list[str]]:
    """The argv of every bpftrace run the agent started, from its store's metadata."""
    metas = [json.loads(p.read_text()) for p in (agent.dir / "store").glob("*/meta.json")]
    return [m["meta"]["argv"] for m in metas if m.get("kind") == "bpftrace"]


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[PolicyAgent]:
    started = PolicyAgent(tmp_path, profile_max_duration=5)
    yield started
    started.stop()
    assert agent_tracers(started) == []


def test_the_policy_caps_a_profile(tmp_path: Path, agent: PolicyAgent) -> None:
    error = agent.error(protocol.PROFILE_START, duration=6)
    assert error["data"]["kind"] == protocol.POLICY_DENIED and error["data"]["rule"] == "policy.profile_max_duration"
    assert "profile cap of 5s" in error["message"] and "profile_max_duration" in error["data"]["hint"]
    # bpftrace's own caps hold for profiles too: its duration cap, and bpftrace_enabled.
    for name, policy, rule in (
        ("capped", {"bpftrace_max_duration": 1}, "policy.bpftrace_max_duration"),
        ("disabled", {"bpftrace_enabled": False}, "policy.bpftrace_enabled"),
    ):
        (tmp_path / name).mkdir()
        other = PolicyAgent(tmp_path / name, **policy)
        try:
            refused = other.error(protocol.PROFILE_START, duration=2)
            assert refused["data"]["kind"] == protocol.POLICY_DENIED and refused["data"]["rule"] == rule, refused
            assert other.result(protocol.JOBS_LIST)["jobs"] == []
        finally:
            other.stop()
    assert bpftrace_argvs(agent) == []


ATTACKS = [
    {"hz": "49"},
    {"hz": '49 { system("id"); } //'},
    {"hz": 49.0},
    {"hz": True},
    {"hz": [49]},
    {"hz": {"value": 49}},
    {"hz": -49},
    {"hz": 0},
    {"hz": 1000},
    {"hz": 10**30},
    {"hz": "\x00\n\x1b[2J"},
    {"duration": "1"},
    {"duration": '1 } interval:s:1 { system("id"); }'},
    {"duration": -1},
    {"duration": 0},
    {"duration": 1e308},
    {"duration": float("inf")},
    {"duration": float("nan")},
    {"duration": 10**400},
    {"duration": [1]},
    {"top": -1},
    {"top": "all"},
    {"top": 10**9},
    {"wait": -1},
    {"wait": 1e9},
    {"wait": "\r\n"},
]


def test_attacks_on_the_numbers_are_refused_before_bpftrace(agent: PolicyAgent) -> None:
    for params in ATTACKS:
        error = agent.error(protocol.PROFILE_START, **dict({"duration": 1}, **params))
        assert error["data"]["kind"] == protocol.BAD_PARAMS, (params, error)
        name = next(iter(params))
        assert f"'{name}'" in error["message"], (params, error)
    assert agent.result(protocol.JOBS_LIST)["jobs"] == [] and bpftrace_argvs(agent) == []
    assert agent_tracers(agent) == []


def test_only_the_agents_program_reaches_bpftrace(agent: PolicyAgent) -> None:
    """Params the method does not take (a program, bpftrace options) are not read at all."""
    extra = {"program": 'BEGIN { system("id"); }', "tool": "execsnoop", "args": {"1": "-c id"}, "format": "text"}
    status = agent.result(protocol.PROFILE_START, hz=97, duration=0.5, wait=30, **extra)
    assert status["state"] == "done" and status["meta"]["bpftrace"] == "profile", status
    [argv] = bpftrace_argvs(agent)
    assert argv[1:] == [
        "-f",
        "json",
        "-e",
        "profile:hz:97 { @[comm, kstack] = count(); }\ninterval:ms:500 { exit(); }\n",
        "--",
    ]
    # profile.result reads profiles only; a bpftrace run started otherwise is not one.
    other = agent.result(protocol.BPFTRACE_RUN, program="BEGIN { exit(); }", wait=30)
    refused = agent.error(protocol.PROFILE_RESULT, job_id=other["job_id"])
    assert refused["data"]["kind"] == protocol.BAD_PARAMS and "is not a profile" in refused["message"]
    for job_id in ("../../../etc/passwd", "j1; rm -rf /", "\x00"):
        assert agent.error(protocol.PROFILE_RESULT, job_id=job_id)["data"]["kind"] == protocol.UNKNOWN_JOB
    assert agent.error(protocol.PROFILE_RESULT, job_id=7)["data"]["kind"] == protocol.BAD_PARAMS


@pytest.mark.parametrize(
    ("method", "params"),
    [
        (protocol.BPFTRACE_RUN, {"program": "BEGIN { @x = count(); }", "duration": 5}),
        (protocol.RUN, {"command": "vmstat", "duration": 5}),
    ],
    ids=["bpftrace.run", "run"],
)
@pytest.mark.parametrize("bad", [{"wait": -1}, {"wait": "soon"}, {"page_bytes": 10**9}], ids=str)
def test_a_bad_wait_or_page_size_is_refused_before_the_job_starts(
    agent: PolicyAgent, method: str, params: dict[str, object], bad: dict[str, object]
) -> None:
    """It was checked only once the job ran, so the refused call left the job running."""
    error = agent.error(method, **params, **bad)
    assert error["data"]["kind"] == protocol.BAD_PARAMS and f"'{next(iter(bad))}'" in error["message"], error
    assert agent.result(protocol.JOBS_LIST)["jobs"] == [], "the refused call started a job"
