"""A dump's vmlinux fetched by build id from a real elfutils debuginfod on 127.0.0.1 (indexing the
fixture's -dbg .deb), by a real agent whose dump dir holds no vmlinux."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent import profiles, sandbox
from crashfleet.agent.dumps import debuginfod, formats
from crashfleet.agent.policy import DEFAULTS
from tests.dumps.agentproc import Agent, alive, spawn
from tests.dumps.debuginfod_server import free_port, serving
from tests.dumps.fixture import Fixture, dbg_deb, link_file

OPEN_DEADLINE = 1200.0  # a 590 MB vmlinux out of an xz .deb, on a loaded 2-core machine


@pytest.fixture(scope="module")
def server(dump_fixture: Fixture) -> Iterator[str]:
    with serving(dbg_deb(dump_fixture).parent, "debs") as url:
        yield url


@pytest.fixture
def start(zipapp: Path, dump_fixture: Fixture, tmp_path: Path) -> Iterator[Any]:
    """start(urls, **policy) -> (agent, vmcore, cache dir): the sysrq dump alone, no vmlinux anywhere."""
    dumps = tmp_path / "dumps"
    link_file(dump_fixture.vmcore("sysrq"), dumps / "vmcore")
    agents: list[Agent] = []

    def start_agent(urls: list[str], local_vmlinux: bool = False, **policy: Any) -> tuple[Agent, str, Path]:
        cache = tmp_path / "cache"
        if local_vmlinux:  # only the modules' debuginfo is fetched
            link_file(dump_fixture.vmlinux, dumps / dump_fixture.vmlinux.name)
        agent = spawn(
            zipapp, tmp_path, dict({"debuginfod_urls": urls, "debuginfod_cache_dir": str(cache)}, **policy), dumps
        )
        agents.append(agent)
        return agent, str(dumps / "vmcore"), cache

    yield start_agent
    for agent in agents:
        if agent.proc.poll() is None:
            agent.stop()


def build_id(fixture: Fixture) -> str:
    found = formats.identify(str(fixture.vmcore("sysrq")))["build_id"]
    assert found
    return str(found)


def open_waiting(agent: Agent, vmcore: str, **params: Any) -> dict[str, Any]:
    """dumps.open as the controller calls it: again while the download runs; the final answer."""
    deadline = time.monotonic() + OPEN_DEADLINE
    while True:
        message = agent.call("dumps.open", vmcore=vmcore, fetch_wait=60, **params)
        if "error" in message or not message["result"].get("fetching"):
            return message
        assert time.monotonic() < deadline, f"still fetching after {OPEN_DEADLINE:g} s: {message}"


def no_leftovers(cache: Path) -> None:
    assert not list(cache.rglob("*.part")) and not [p for p in cache.glob("*") if p.is_dir()], list(cache.rglob("*"))


def test_first_open_downloads_second_uses_the_cache(start: Any, server: str, dump_fixture: Fixture) -> None:
    agent, vmcore, cache = start([server])
    bid = build_id(dump_fixture)
    listed = agent.result("dumps.list")["dumps"][0]["debuginfo"]
    assert listed["source"] == "debuginfod" and not listed["present"] and listed["servers"] == [server], listed

    pending = agent.result("dumps.open", vmcore=vmcore, fetch_wait=0)
    assert pending["fetching"] and pending["build_id"] == bid, pending
    job = agent.result("job.status", job_id=pending["job_id"])
    assert job["kind"] == "debuginfod" and job["meta"]["build_id"] == bid
    message = open_waiting(agent, vmcore)
    assert "result" in message, message
    opened = message["result"]
    fetched = cache / bid / "debuginfo"
    assert opened["vmlinux"] == str(fetched) and "sysrq triggered crash" in opened["page"]["text"]
    assert formats.elf_build_id(str(fetched)) == bid and not list(cache.rglob("*.part"))
    done = agent.result("job.status", job_id=pending["job_id"])
    assert done["state"] == "done" and done["exit_status"] == 0, done
    assert '"done": true' in agent.result("page", output_id=done["output_id"])["text"]

    agent.result("dumps.close", session_id=opened["session_id"])
    again = agent.result("dumps.open", vmcore=vmcore, fetch_wait=0)
    assert not again.get("fetching") and again["vmlinux"] == str(fetched)
    jobs = [j for j in agent.result("jobs.list")["jobs"] if j["kind"] == "debuginfod"]
    assert len(jobs) == 1, jobs  # the second open downloaded nothing
    listed = agent.result("dumps.list")["dumps"][0]["debuginfo"]
    assert listed["present"] and listed["cached"] and listed["vmlinux"] == str(fetched)
    session = agent.result("dumps.sessions")["sessions"][0]
    assert agent.stop() == 0
    assert not alive(session["crash_pid"])


def test_over_the_cache_quota_is_refused_without_a_partial_file(start: Any, server: str) -> None:
    agent, vmcore, cache = start([server], debuginfod_cache_bytes=64 << 20)
    refused = open_waiting(agent, vmcore)["error"]
    assert refused["data"]["kind"] == "debuginfod_failed" and "room for" in refused["message"], refused
    no_leftovers(cache)
    assert agent.result("dumps.sessions")["sessions"] == []
    assert agent.stop() == 0


class _WrongFile(http.server.BaseHTTPRequestHandler):
    """A server that answers every build id with /bin/true (an ELF, with another build id)."""

    def do_GET(self) -> None:
        data = Path("/bin/true").read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_file_with_the_wrong_build_id_is_rejected_and_removed(start: Any) -> None:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _WrongFile)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        agent, vmcore, cache = start([f"http://127.0.0.1:{httpd.server_port}"])
        refused = open_waiting(agent, vmcore)["error"]
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert refused["data"]["kind"] == "debuginfod_wrong_file", refused
    assert formats.elf_build_id("/bin/true") in refused["message"] and "removed" in refused["message"]
    no_leftovers(cache)
    assert agent.result("dumps.sessions")["sessions"] == []
    assert agent.stop() == 0


def test_a_server_without_the_build_id_says_so(start: Any) -> None:
    with serving(None, "empty") as empty:
        agent, vmcore, cache = start([empty])
        refused = open_waiting(agent, vmcore)["error"]
    assert refused["data"]["kind"] == "debuginfod_failed" and "HTTP 404" in refused["message"], refused
    assert "no such build id" in refused["message"] and "debuginfo package" in refused["data"]["hint"]
    no_leftovers(cache)
    assert agent.stop() == 0


def test_a_dead_server_fails_with_a_clear_error(start: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    agent, vmcore, cache = start([dead])
    refused = open_waiting(agent, vmcore)["error"]
    assert refused["data"]["kind"] == "debuginfod_failed", refused
    assert dead in refused["message"] and "unreachable" in refused["message"] and "refused" in refused["message"]
    no_leftovers(cache)
    assert agent.result("dumps.sessions")["sessions"] == []
    assert agent.stop() == 0


def test_no_server_configured_keeps_the_package_hint(start: Any, dump_fixture: Fixture) -> None:
    agent, vmcore, _ = start([])
    refused = agent.error("dumps.open", vmcore=vmcore)
    assert refused["data"]["kind"] == "no_vmlinux" and "no debuginfod server configured" in refused["message"]
    assert dump_fixture.release in (refused["data"].get("hint") or "")
    assert agent.result("dumps.list")["dumps"][0]["debuginfo"]["source"] == "missing"
    assert agent.stop() == 0


class _Policy:
    settings = dict(DEFAULTS)


def test_the_download_sandbox_connects_only_to_the_servers_ports(tmp_path: Path) -> None:
    """The fetch child's profile, in a real sandboxed child: its server's port yes, others no,
    no file written outside its build id's dir."""
    if sandbox.landlock_abi() < 4:
        pytest.skip("Landlock ABI < 4 has no TCP rules (the fetch keeps the network there)")
    allowed, other = socket.socket(), socket.socket()
    for sock in (allowed, other):
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
    fetch_dir = tmp_path / "fetch"
    fetch_dir.mkdir()
    profile = profiles.debuginfod(_Policy(), str(fetch_dir), [allowed.getsockname()[1]], debuginfod._python_paths())

    addresses = {"allowed": allowed.getsockname(), "other": other.getsockname()}  # the child closes the fds

    def probe() -> dict[str, str]:
        result = {}
        for name, address in addresses.items():
            try:
                socket.create_connection(address, timeout=5).close()
                result[name] = "connected"
            except OSError as exc:
                result[name] = type(exc).__name__
        for name, path in (("inside", fetch_dir / "f"), ("outside", tmp_path / "f")):
            try:
                path.write_text("x")
                result[name] = "written"
            except OSError as exc:
                result[name] = type(exc).__name__
        return result

    try:
        got = sandbox.fork_call(probe, profile, timeout=60)
    finally:
        allowed.close()
        other.close()
    assert got == {
        "allowed": "connected",
        "other": "PermissionError",
        "inside": "written",
        "outside": "PermissionError",
    }, got
    assert not (tmp_path / "f").exists() and os.path.exists(fetch_dir / "f")


MODULE = "qemu_fw_cfg"  # loaded in the fixture's dumps; its .ko debug file is in the -dbg .deb
MODULE_BUILD_ID = "ba7ab1a96eb2281593d74c84e9a6af332e05173c"


def debuginfod_jobs(agent: Agent) -> list[dict[str, Any]]:
    return [j for j in agent.result("jobs.list")["jobs"] if j["kind"] == "debuginfod"]


def children(pid: int) -> list[int]:
    """The live processes whose parent is pid (the agent's crash, drgn and fetch children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_modules_debuginfo_is_fetched_and_loaded_into_crash(start: Any, server: str) -> None:
    agent, vmcore, cache = start([server], local_vmlinux=True)
    message = open_waiting(agent, vmcore, modules=True)
    assert "result" in message, message
    opened = message["result"]
    assert opened["modules"] == {"loaded": [MODULE], "failed": {}}, opened
    fetched = cache / MODULE_BUILD_ID / "debuginfo"
    assert formats.elf_build_id(str(fetched)) == MODULE_BUILD_ID and not list(cache.rglob("*.part"))
    assert [j["meta"]["build_id"] for j in debuginfod_jobs(agent)] == [MODULE_BUILD_ID]  # not the vmlinux
    sid = opened["session_id"]
    listed = agent.result("dumps.crash", session_id=sid, command="mod")["page"]["text"]
    assert MODULE in listed and str(fetched) in listed, listed
    sym = agent.result("dumps.crash", session_id=sid, command="sym fw_cfg_sysfs_probe")["page"]["text"]
    assert "qemu_fw_cfg.c: 675" in sym, sym
    refused = agent.error("dumps.crash", session_id=sid, command=f"mod -s {MODULE} {fetched}")
    assert "files on the host" in refused["message"], refused  # users still cannot load files

    agent.result("dumps.close", session_id=sid)
    again = open_waiting(agent, vmcore, modules=True)["result"]
    assert again["modules"]["loaded"] == [MODULE] and len(debuginfod_jobs(agent)) == 1  # from the cache
    sym = agent.result("dumps.crash", session_id=again["session_id"], command="sym fw_cfg_sysfs_probe")
    assert "qemu_fw_cfg.c: 675" in sym["page"]["text"], sym
    crash_pid = again["crash_pid"]
    assert agent.stop() == 0
    assert not alive(crash_pid)


def test_without_modules_nothing_is_fetched(start: Any, server: str) -> None:
    agent, vmcore, cache = start([server], local_vmlinux=True)
    opened = agent.result("dumps.open", vmcore=vmcore)
    assert "sysrq triggered crash" in opened["page"]["text"] and "modules" not in opened, opened
    sym = agent.result("dumps.crash", session_id=opened["session_id"], command="sym fw_cfg_sysfs_probe")
    assert "qemu_fw_cfg.c" not in sym["page"]["text"], sym  # crash knows the symbol, not its source line
    assert debuginfod_jobs(agent) == []
    assert not cache.exists() or not list(cache.iterdir())
    assert agent.stop() == 0


def test_a_module_the_server_lacks_is_noted_not_fatal(start: Any) -> None:
    with serving(None, "empty") as empty:
        agent, vmcore, cache = start([empty], local_vmlinux=True)
        message = open_waiting(agent, vmcore, modules=True)
    assert "result" in message, message
    opened = message["result"]
    assert opened["modules"] == {"loaded": [], "failed": {}}, opened
    assert any(MODULE in n and "HTTP 404" in n for n in opened["notes"]), opened["notes"]
    assert "sysrq triggered crash" in opened["page"]["text"]
    no_leftovers(cache)
    assert agent.stop() == 0


def test_a_dead_server_for_modules_fails_clearly_and_leaves_nothing(start: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    agent, vmcore, cache = start([dead], local_vmlinux=True)
    refused = open_waiting(agent, vmcore, modules=True)["error"]
    assert refused["data"]["kind"] == "debuginfod_failed" and refused["data"]["module"] == MODULE, refused
    assert f"module {MODULE} (build id {MODULE_BUILD_ID})" in refused["message"], refused
    assert dead in refused["message"] and "unreachable" in refused["message"], refused
    no_leftovers(cache)
    assert agent.result("dumps.sessions")["sessions"] == []
    assert children(agent.proc.pid) == []  # no crash, no drgn worker, no fetch left running
    assert agent.stop() == 0
