"""max_jobs on a real agent (the zipapp, its own policy file): a job past the cap is refused, never started."""

from __future__ import annotations

from pathlib import Path

from tests.agentproc import PolicyAgent
from tests.helpers import cwd, pids_matching, wait_until


def vmstats(tmp_path: Path) -> list[int]:
    return [p for p in pids_matching("vmstat", "-w") if cwd(p).startswith(str(tmp_path))]


async def test_a_job_past_max_jobs_is_refused_until_one_ends(tmp_path: Path) -> None:
    agent = PolicyAgent(tmp_path, max_jobs=2)
    try:
        jobs = [agent.result("run", command="vmstat", duration=300)["job_id"] for _ in range(2)]
        error = agent.error("run", command="vmstat", duration=300)
        assert (error["data"]["kind"], error["data"]["rule"]) == ("quota_exceeded", "quota.jobs"), error
        assert "2 jobs are running" in error["message"] and "job_cancel" in error["data"]["hint"]
        assert len(vmstats(tmp_path)) == 2
        agent.result("job.cancel", job_id=jobs.pop())
        jobs.append(agent.result("run", command="vmstat", duration=300)["job_id"])
        assert len(agent.result("jobs.list")["jobs"]) == 3  # two running, one cancelled
        assert agent.stop() == 0  # EOF: the agent stops the running ones
    finally:
        agent.kill()
    assert await wait_until(lambda: not vmstats(tmp_path), 10)
