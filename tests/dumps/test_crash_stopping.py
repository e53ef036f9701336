"""A command being stopped frees its session soon: the next one waits for it, not "busy".

The real crash 8.0.2 on the fixture dump, driven as the agent drives it. crash is SIGSTOPped
mid-command, so ^C cannot stop it and the session must restart crash: the slow way a cancel
ends under load (the fault this reproduces: on a busy host ^C's restart outlasted the wait).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from crashfleet.agent.dumps.crash_session import STOPPING_WAIT, CrashSession
from tests.dumps.fixture import Fixture

TIMEOUT = 600.0  # the command's own timeout: far off, only the cancel ends it
BUSY = 0.1  # seconds a command waits on a session still working: "busy" at once


@pytest.fixture
def session(dump_fixture: Fixture, tmp_path: Any) -> Iterator[CrashSession]:
    crash = dump_fixture.crash_session(tmp_path)
    crash.start()
    yield crash
    crash.close()


def test_a_cancel_that_restarts_crash_is_waited_for(session: CrashSession) -> None:
    printing = threading.Event()
    ended: dict[str, Any] = {}

    def command() -> None:
        with session.lock:
            ended.update(session.run("rd -p -64 0 30000000", None, lambda _: printing.set(), TIMEOUT))

    runner = threading.Thread(target=command)
    runner.start()
    try:
        assert printing.wait(120), "crash printed nothing"
        assert not session.take(BUSY), "a working command's session must be busy"
        old = session.pid
        assert old is not None
        os.kill(old, signal.SIGSTOP)  # ^C cannot reach it now: the session restarts crash
        session.interrupt()
        assert session.take(BUSY), "the next command gave up on a session being freed"
        session.lock.release()
    finally:
        if session.pid is not None:
            os.kill(session.pid, signal.SIGCONT)
        runner.join(STOPPING_WAIT)
    assert ended["ended"] == "restarted" and ended["reason"] == "cancelled", ended
    assert session.pid != old
    out: list[bytes] = []
    after = session.run("sys", None, out.append, 120)
    assert after["ended"] == "done" and b"sysrq triggered crash" in b"".join(out), (after, out)
