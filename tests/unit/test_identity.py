"""controller.identity: one key per live controller process and role, the same key after a restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from crashfleet.controller.identity import claim

CLAIM_AND_PRINT = """
import sys
from pathlib import Path
from crashfleet.controller.identity import claim
print(claim(sys.argv[1], sys.argv[2], Path(sys.argv[3])).slot, flush=True)
"""


def slot_in_another_process(base: str, role: str, directory: Path) -> str:
    return subprocess.run(
        [sys.executable, "-c", CLAIM_AND_PRINT, base, role, str(directory)], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_process_beside_a_live_one_is_another_controller(tmp_path: Path) -> None:
    server = claim("0123abcd", "serve", tmp_path)
    try:
        assert server.slot == "serve-0"
        assert slot_in_another_process("0123abcd", "serve", tmp_path) == "serve-1"  # a second server
        assert slot_in_another_process("0123abcd", "cli", tmp_path) == "cli-0"  # a CLI: its own role
    finally:
        server.release()


def test_a_restart_is_the_same_controller(tmp_path: Path) -> None:
    first = slot_in_another_process("0123abcd", "serve", tmp_path)  # that process ended: its lock with it
    again = claim("0123abcd", "serve", tmp_path)
    try:
        assert (first, again.slot) == ("serve-0", "serve-0")
        assert again.key == claim_key_of("0123abcd", "serve", tmp_path / "elsewhere")
    finally:
        again.release()


def claim_key_of(base: str, role: str, directory: Path) -> str:
    identity = claim(base, role, directory)
    identity.release()
    return identity.key


def test_keys_differ_by_slot_and_by_inventory_name(tmp_path: Path) -> None:
    one, two = claim("0123abcd", "serve", tmp_path), claim("0123abcd", "serve", tmp_path)
    try:
        assert one.key != two.key
        assert one.host_key("web01") != one.host_key("web01.example.com")  # one machine, two names
        assert one.host_key("web01") != two.host_key("web01")
        assert one.host_key("web01") == one.host_key("web01") and len(one.host_key("web01")) == 16
    finally:
        one.release()
        two.release()
