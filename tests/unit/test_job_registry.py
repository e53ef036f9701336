"""JobRegistry makes every change of a fleet job's state and polls its hosts the same way for every tool.

The hosts here are the default fleet (this machine); `ask` stands for a tool's per-host call, so the
registry's own rules are what is tested (the real agents' answers: tests/integration/test_faults.py)."""

from __future__ import annotations

from pathlib import Path

from crashfleet.agent import protocol
from crashfleet.controller.errors import JobLost, UnknownJob
from crashfleet.controller.fleet import Fleet
from crashfleet.controller.grouping import HostOutcome
from crashfleet.controller.jobs import JobRegistry, JobState
from crashfleet.controller.settings import Settings
from crashfleet.inventory import Host


def registry(tmp_path: Path) -> JobRegistry:
    return JobRegistry(Fleet(Settings(audit_log=tmp_path / "audit.jsonl")), tmp_path / "jobs.json")


def test_a_job_holds_the_hosts_still_running(tmp_path: Path) -> None:
    jobs = registry(tmp_path)
    outcomes = [
        HostOutcome("a", "running", extra={"job_id": "j1-aa"}),
        HostOutcome("b", "ok", extra={"job_id": "j2-bb"}),
        HostOutcome("c", "failed"),
    ]
    job = jobs.start("fleet_run", "all", outcomes, command="vmstat")
    assert job is not None and job.host_jobs == {"a": "j1-aa"} and job.state is JobState.RUNNING
    every = jobs.start("capture", "all", outcomes, every_started=True)
    assert every is not None and every.host_jobs == {"a": "j1-aa", "b": "j2-bb"}
    assert jobs.start("fleet_run", "all", outcomes[1:]) is None, "nothing running: no job"


def test_states_only_move_forward_and_survive_a_restart(tmp_path: Path) -> None:
    jobs = registry(tmp_path)
    job = jobs.add("fleet_run", "all", {"localhost": "j1-aa"})
    jobs.finish(job)
    assert job.state is JobState.DONE
    jobs.cancel(job)
    assert job.state is JobState.CANCELLED
    jobs.finish(job)
    assert job.state is JobState.CANCELLED, "a late poll cannot revive a cancelled job"
    again = registry(tmp_path).get(job.job_id)
    assert again.state is JobState.CANCELLED and again.host_jobs == {"localhost": "j1-aa"}
    assert registry(tmp_path).add("x", "all", {}).job_id != job.job_id, "ids go on after a restart"


async def test_polling_turns_a_lost_job_into_a_lost_host_and_ends_the_job(tmp_path: Path) -> None:
    jobs = registry(tmp_path)
    job = jobs.add("fleet_run", "localhost", {"localhost": "j7-ab"})
    asked: list[str] = []

    async def still_running(host: Host, agent_job: str) -> HostOutcome:
        asked.append(agent_job)
        return HostOutcome(host.name, "running", extra={"job_id": agent_job})

    await jobs.each_host(job, still_running)
    assert asked == ["j7-ab"] and job.state is JobState.RUNNING

    async def lost(host: Host, agent_job: str) -> HostOutcome:
        data = {"kind": protocol.JOB_LOST, "output_id": "o7"}
        raise JobLost("job j7-ab ended with an earlier agent on this host", "output_page reads it", "job_lost", data)

    [outcome], _ = await jobs.each_host(job, lost)
    assert (outcome.status, outcome.key, outcome.output_id) == ("failed", "lost", "localhost:o7")
    assert job.state is JobState.DONE

    async def unknown(host: Host, agent_job: str) -> HostOutcome:
        raise UnknownJob("unknown job", None, "unknown_job", {})

    [outcome], _ = await jobs.each_host(jobs.add("fleet_run", "localhost", {"localhost": "j9-cd"}), unknown)
    assert outcome.key == "lost" and "j9-cd is gone from localhost" in (outcome.message or "")
