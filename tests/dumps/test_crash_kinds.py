"""The crash-kind fixtures hold what their ground truth says: each kind's real console log has
its report's header and its culprit, each vmcore is an ELF core with VMCOREINFO, the kdump
dumps are makedumpfile's, the pstore records hold the oops; the trimmed logs committed under
tests/unit/data/oops say the same."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.dumps.crash_kinds import FIXTURE_KINDS, KDUMP_KINDS, KINDS, CrashKinds, ensure_kinds

# A first build boots every kind under TCG (minutes); later sessions reuse the cache.
pytestmark = pytest.mark.timeout(1800)
OOPS_DATA = Path(__file__).resolve().parents[1] / "unit" / "data" / "oops"
PT_NOTE = 4


@pytest.fixture(scope="module")
def kinds() -> CrashKinds:
    return ensure_kinds()


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


@pytest.mark.parametrize("kind", list(KINDS))
def test_serial_log_holds_the_kinds_header_and_culprit(kinds: CrashKinds, kind: str) -> None:
    serial = kinds.serial(kind)
    assert serial is not None
    text = _text(serial)
    truth = kinds.truth(kind)
    assert f"crashfleet fixture: panic {kind}" in text
    assert KINDS[kind].header in text, text[-3000:]
    assert truth.culprit is None or truth.culprit in text
    assert truth.owner in text  # the module ("Modules linked in: cfx_ring(OE+)") or the comm
    assert "end Kernel panic" in text


def test_the_two_soft_lockups_differ_only_in_the_spinning_function(kinds: CrashKinds) -> None:
    a, b = _culprit("softlockup_a"), _culprit("softlockup_b")
    assert KINDS["softlockup_a"].header == KINDS["softlockup_b"].header and a != b
    text_a, text_b = (_text(kinds.serial(k) or Path("/nonexistent")) for k in ("softlockup_a", "softlockup_b"))
    assert f"RIP: 0010:{a}+" in text_a and b not in text_a
    assert f"RIP: 0010:{b}+" in text_b and a not in text_b


@pytest.mark.parametrize("kind", [*KINDS, *FIXTURE_KINDS])
def test_vmcore_is_an_elf_core_with_vmcoreinfo(kinds: CrashKinds, kind: str) -> None:
    notes = _elf_notes(kinds.vmcore(kind))
    assert b"VMCOREINFO" in notes, sorted(notes)
    assert f"OSRELEASE={kinds.release}".encode() in notes[b"VMCOREINFO"]


@pytest.mark.parametrize("kind", KDUMP_KINDS)
def test_kdump_dump_and_dmesg_from_the_capture_kernel(kinds: CrashKinds, kind: str) -> None:
    dump, dmesg = kinds.kdump(kind), kinds.dmesg(kind)
    assert dump is not None and dmesg is not None
    with open(dump, "rb") as handle:
        assert handle.read(8) == b"KDUMP   "  # makedumpfile's kdump-compressed signature
    log = _text(dmesg)
    assert KINDS[kind].header in log and _culprit(kind) in log


def test_pstore_record_holds_the_oops(kinds: CrashKinds) -> None:
    records = sorted(kinds.pstore.glob("dmesg-ramoops-*"))
    assert records, list(kinds.pstore.iterdir())
    texts = [_text(r) for r in records]
    oops = [t for t in texts if t.startswith("Oops#")]
    assert oops, [t[:40] for t in texts]
    assert KINDS["null_deref"].header in oops[0] and "cfx_flush_ring" in oops[0]
    assert any(t.startswith("Panic#") and "Kernel panic - not syncing" in t for t in texts)


@pytest.mark.parametrize("kind", [*KINDS, *FIXTURE_KINDS])
def test_committed_log_is_that_kinds(kind: str) -> None:
    """tests/unit/data/oops/<kind>.log: what other tests parse (no build needed)."""
    path = OOPS_DATA / f"{kind}.log"
    if kind in FIXTURE_KINDS and not path.exists():
        pytest.skip(f"fixture.py kept no serial log of {kind} when the logs were exported")
    text = path.read_text()
    assert "\r" not in text and len(text.splitlines()) <= 300
    assert f"crashfleet fixture: panic {kind}" in text and f"`{path.name}`" in (OOPS_DATA / "README.md").read_text()
    if kind in KINDS:
        culprit = KINDS[kind].culprit
        assert KINDS[kind].header in text and (culprit is None or culprit in text)


def _culprit(kind: str) -> str:
    culprit = KINDS[kind].culprit
    assert culprit is not None, kind
    return culprit


def _elf_notes(path: Path) -> dict[bytes, bytes]:
    """name -> desc of the notes in an ELF64 core's PT_NOTE segments (QEMU writes them first)."""
    with open(path, "rb") as handle:
        head = handle.read(64)
        assert head[:4] == b"\x7fELF" and head[4] == 2, head[:8]  # ELF64
        assert struct.unpack_from("<H", head, 16)[0] == 4  # ET_CORE
        phoff, phentsize, phnum = struct.unpack_from("<Q", head, 32)[0], *struct.unpack_from("<HH", head, 54)
        handle.seek(phoff)
        headers = handle.read(phentsize * phnum)
        notes = {}
        for i in range(phnum):
            p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", headers, i * phentsize)
            if p_type == PT_NOTE:
                handle.seek(p_offset)
                notes.update(_parse_notes(handle.read(p_filesz)))
    return notes


def _parse_notes(data: bytes) -> dict[bytes, bytes]:
    notes, at = {}, 0
    while at + 12 <= len(data):
        namesz, descsz, _ = struct.unpack_from("<III", data, at)
        name_at = at + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        notes[data[name_at : name_at + namesz].rstrip(b"\0")] = data[desc_at : desc_at + descsz]
        at = desc_at + (descsz + 3) // 4 * 4
    return notes
