"""Which crash_open needs a debuginfod download, and what the person is asked: from a dump listing as
the agent gives it (agent/protocol.py DumpList). The agent learns a download's size only when it starts,
so a download of unknown size is asked about; one whose size is known is compared with consent_bytes."""

from __future__ import annotations

from typing import Any

from crashfleet.controller.consent_scope import call_command, download_scope

BUILD_ID = "ba7ab1a96eb2281593d74c84e9a6af332e05173c"
SERVERS = ["http://debuginfod.example:8002"]


def listing(**debuginfo: Any) -> Any:
    dump = {"path": "/var/crash/202611210312/dump.202611210312", "format": "kdump", "build_id": BUILD_ID}
    other = {"path": "/var/crash/old/vmcore", "format": "elf", "build_id": "00" * 20, "debuginfo": {"present": True}}
    return {"dumps": [dict(dump, debuginfo=debuginfo), other], "dirs": [], "skipped": [], "allowed": []}


def test_a_download_of_unknown_size_is_asked_about_with_what_and_from_where() -> None:
    args = {"host": "web07"}
    found = download_scope("web07", None, listing(present=False, source="debuginfod", servers=SERVERS), 100, args)
    assert found is not None
    assert found.question == (
        f"download the vmlinux of build id {BUILD_ID} (size unknown until it starts; a vmlinux is ~0.5 GB) "
        f"from {SERVERS[0]} to web07 for /var/crash/202611210312/dump.202611210312: approve?"
    )
    assert found.hosts == "web07" and found.command == call_command("crash_open", args)
    assert found.command == 'crashfleet call crash_open \'{"host": "web07"}\''


def test_no_download_no_question() -> None:
    cached = listing(present=True, source="debuginfod", cached=True, vmlinux="/cache/x/debuginfo")
    local = listing(present=True, source="local", vmlinux="/var/crash/vmlinux")
    missing = listing(present=False, source="missing", package_hint="linux-image-6.1.0-57-cloud-amd64-dbg")
    for answer in (cached, local, missing):
        assert download_scope("web07", None, answer, 100, {}) is None, answer


def test_the_dump_named_is_the_one_judged() -> None:
    answer = listing(present=False, source="debuginfod", servers=SERVERS)
    assert download_scope("web07", "/var/crash/old/vmcore", answer, 100, {}) is None  # its vmlinux is there
    assert download_scope("web07", "dump.202611210312", answer, 100, {}) is not None  # by file name too
    assert download_scope("web07", "/no/such/dump", answer, 100, {}) is None  # crash_open says what is wrong


def test_a_known_size_is_compared_with_consent_bytes() -> None:
    small = listing(present=False, source="debuginfod", servers=SERVERS, size=50 << 20)
    assert download_scope("web07", None, small, 100 << 20, {}) is None
    found = download_scope("web07", None, small, 10 << 20, {})
    assert found is not None and "(50 MiB)" in found.question
