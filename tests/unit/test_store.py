"""Tests for the agent's on-disk output store (real files under tmp_path)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent.store import Store, StoreError

MARKER_RE = r"\[crashfleet: output truncated at \d+ bytes \(\w+\)\]"


def _store(tmp_path: Path, **kw: Any) -> Store:
    return Store(str(tmp_path / "store"), **kw)


def _put(store: Store, data: bytes, kind: str = "cmd", close: bool = True) -> str:
    w = store.create(kind)
    w.write(data)
    if close:
        w.close(exit_status=0)
    return w.output_id


def _read_all(store: Store, oid: str, **kw: Any) -> list[dict[str, Any]]:
    """Follow the cursor chain of a finished output to its end."""
    pages, cursor = [], None
    for _ in range(100000):
        p = store.page(oid, cursor, **kw)
        pages.append(p)
        cursor = p["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("cursor chain does not end")


def _search_all(store: Store, oid: str, pattern: str, **kw: Any) -> list[dict[str, Any]]:
    matches, cursor = [], None
    for _ in range(10000):
        r = store.search(oid, pattern, cursor=cursor, **kw)
        matches.extend(r["matches"])
        cursor = r["next_cursor"]
        if cursor is None:
            assert not r["more"]
            return matches
    raise AssertionError("search cursor chain does not end")


def _code(excinfo: Any) -> str:
    return str(excinfo.value.code)


# ---------------------------------------------------------------- paging


def test_cursor_chain_reconstructs_content_exactly(tmp_path: Path) -> None:
    rnd = random.Random(7)
    lines = [
        b"%05d " % i + bytes(rnd.choice(b"abcdef ") for _ in range(rnd.randint(0, 300))) + b"\n" for i in range(5000)
    ]
    lines[10] = b"\n"  # empty lines are lines too
    content = b"".join(lines)
    store = _store(tmp_path)
    oid = _put(store, content)

    pages = _read_all(store, oid, max_bytes=1000, max_lines=37)
    assert "".join(p["text"] for p in pages).encode() == content
    assert len(pages) > 100
    expected_start = 1
    for p in pages:
        assert p["start_line"] == expected_start
        assert 1 <= p["end_line"] - p["start_line"] + 1 <= 37
        assert len(p["text"].encode()) <= 1000
        assert p["text"].encode() == b"".join(lines[p["start_line"] - 1 : p["end_line"]])
        assert (p["total_lines"], p["bytes"], p["finished"], p["truncated"]) == (5000, len(content), True, False)
        expected_start = p["end_line"] + 1
    assert pages[-1]["end_line"] == 5000

    # default page and the on-disk index format (8-byte LE line starts)
    first = store.page(oid)
    assert first["start_line"] == 1 and first["end_line"] == 1 + first["text"].count("\n") - 1
    raw = (tmp_path / "store" / oid / "index").read_bytes()
    starts = list(struct.unpack("<%dQ" % (len(raw) // 8), raw))
    assert starts[:3] == [0, len(lines[0]), len(lines[0]) + len(lines[1])]
    assert len(starts) == 5001 and starts[-1] == len(content)


def test_page_from_line_and_tail(tmp_path: Path) -> None:
    store = _store(tmp_path)
    oid = _put(store, b"".join(b"L%d\n" % i for i in range(1, 101)))
    assert store.page(oid, line=50, max_lines=2)["text"] == "L50\nL51\n"
    tail = store.page(oid, line=-3)
    assert (tail["text"], tail["start_line"], tail["end_line"], tail["next_cursor"]) == (
        "L98\nL99\nL100\n",
        98,
        100,
        None,
    )
    with pytest.raises(StoreError) as e:
        store.page(oid, line=500)
    assert _code(e) == "bad_argument"


def test_huge_single_line_is_split_on_char_boundaries(tmp_path: Path) -> None:
    content = ("\u00e9" * 30000 + "\n").encode() + b"short\n"  # 60001 + 6 bytes
    store = _store(tmp_path)
    oid = _put(store, content)

    first = store.page(oid, max_bytes=16001)  # odd: a naive cut would split an "é"
    assert (first["start_line"], first["end_line"]) == (1, 1)
    assert first["text"] == "\u00e9" * 8000
    assert first["next_cursor"].startswith("1.16000.")

    pages = _read_all(store, oid, max_bytes=16001)
    assert [(p["start_line"], p["end_line"]) for p in pages] == [(1, 1), (1, 1), (1, 1), (1, 2)]
    assert "".join(p["text"] for p in pages) == content.decode()
    assert "\ufffd" not in "".join(p["text"] for p in pages)


def test_unterminated_last_line_and_partial_line_cursor(tmp_path: Path) -> None:
    store = _store(tmp_path)
    w = store.create("cmd")
    w.write(b"a\nb\nc")
    p = store.page(w.output_id)
    assert (p["text"], p["end_line"], p["total_lines"], p["finished"]) == ("a\nb\nc", 3, 3, False)
    assert p["next_cursor"].startswith("3.1.")  # inside line 3, which may still grow

    again = store.page(w.output_id, p["next_cursor"])
    assert again["text"] == "" and again["next_cursor"] == p["next_cursor"]

    w.write(b"cc\nd")
    more = store.page(w.output_id, p["next_cursor"])
    assert (more["text"], more["start_line"], more["end_line"], more["total_lines"]) == ("cc\nd", 3, 4, 4)
    w.close(exit_status=3)
    done = store.page(w.output_id, more["next_cursor"])
    assert (done["text"], done["next_cursor"], done["finished"]) == ("", None, True)
    assert "".join(x["text"] for x in _read_all(store, w.output_id)) == "a\nb\nccc\nd"
    meta = store.info(w.output_id)
    assert (meta["lines"], meta["bytes"], meta["exit_status"]) == (4, 9, 3)


def test_unicode_and_invalid_utf8(tmp_path: Path) -> None:
    content = (
        "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e\n".encode() + b"\xff\xfebad\n" + "emoji \U0001f600\n".encode()
    )
    store = _store(tmp_path)
    oid = _put(store, content)
    text = store.page(oid)["text"]
    assert text == content.decode("utf-8", "replace")
    assert "\ufffd\ufffdbad" in text
    assert [m["line"] for m in store.search(oid, "\u65e5\u672c")["matches"]] == [1]
    bad = store.search(oid, "bad$")["matches"]
    assert [(m["line"], m["text"]) for m in bad] == [(2, "\ufffd\ufffdbad")]


def test_paging_and_searching_while_writer_is_writing(tmp_path: Path) -> None:
    content = b"".join(b"%d:%s\n" % (i, b"y" * (i % 97)) for i in range(20000)) + b"end-without-newline"
    expected_hits = [i + 1 for i in range(20000) if i % 97 == 96]
    store = _store(tmp_path)
    w = store.create("cmd")
    oid = w.output_id
    errors: list[BaseException] = []

    def writer() -> None:
        rnd, pos = random.Random(3), 0
        while pos < len(content):
            n = rnd.randint(1, 6000)
            w.write(content[pos : pos + n])
            pos += n
            if rnd.random() < 0.2:
                time.sleep(0.0005)
        w.close(exit_status=0)

    def pager(parts: list[str], unfinished_pages: list[int]) -> None:
        cursor: str | None = None
        while True:
            p = store.page(oid, cursor, max_bytes=3000, max_lines=50)
            parts.append(p["text"])
            if not p["finished"]:
                unfinished_pages.append(1)
                assert p["next_cursor"] is not None, "unfinished output must hand out a cursor"
            if p["next_cursor"] is None:
                assert p["finished"]
                return
            cursor = p["next_cursor"]
            if not p["text"]:
                time.sleep(0.0005)

    def searcher(hits: list[int]) -> None:
        cursor: str | None = None
        while True:
            r = store.search(oid, r"^\d+:y{96}$", max_matches=7, cursor=cursor)
            hits.extend(m["line"] for m in r["matches"])
            if r["next_cursor"] is None:
                assert r["finished"]
                return
            cursor = r["next_cursor"]

    def guard(fn: Any, *args: Any) -> Any:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as e:  # surfaced in the main thread
                errors.append(e)

        return threading.Thread(target=run)

    parts: list[str] = []
    unfinished: list[int] = []
    hits: list[int] = []
    threads = [guard(writer), guard(pager, parts, unfinished), guard(searcher, hits)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert "".join(parts).encode() == content
    assert unfinished, "reader never overlapped the writer"
    assert hits == expected_hits


# ---------------------------------------------------------------- search


def _log_output() -> bytes:
    out = []
    for i in range(1, 201):
        level = "ERROR" if i % 20 == 0 else ("Error" if i % 20 == 10 else "info")
        out.append("%s line %d\n" % (level, i))
    return "".join(out).encode()


def test_search_context_max_matches_ignore_case_and_resume(tmp_path: Path) -> None:
    store = _store(tmp_path)
    oid = _put(store, _log_output())

    r = store.search(oid, "error", context=2, max_matches=3, ignore_case=True)
    assert [m["line"] for m in r["matches"]] == [10, 20, 30]
    assert r["matches"][0] == {
        "line": 10,
        "text": "Error line 10",
        "before": ["info line 8", "info line 9"],
        "after": ["info line 11", "info line 12"],
    }
    assert (r["more"], r["total_lines"], r["scanned_lines"]) == (True, 200, 30)
    assert r["next_cursor"] is not None and r["pattern"] == "error"

    r2 = store.search(oid, "error", context=2, max_matches=3, ignore_case=True, cursor=r["next_cursor"])
    assert [m["line"] for m in r2["matches"]] == [40, 50, 60]
    assert r2["matches"][0]["before"] == ["info line 38", "info line 39"]  # context re-primed on resume

    every = _search_all(store, oid, "error", ignore_case=True, max_matches=4)
    assert [m["line"] for m in every] == list(range(10, 201, 10))
    upper = _search_all(store, oid, "^ERROR")
    assert [m["line"] for m in upper] == list(range(20, 201, 20))

    last = store.search(oid, "line 200$", context=3)
    assert last["matches"] == [
        {
            "line": 200,
            "text": "ERROR line 200",
            "before": ["info line 197", "info line 198", "info line 199"],
            "after": [],
        }
    ]
    assert (last["more"], last["next_cursor"]) == (False, None)
    start = store.search(oid, "line 1$", context=2)["matches"][0]
    assert start["before"] == [] and start["after"] == ["info line 2", "info line 3"]
    assert store.search(oid, "nomatch")["matches"] == []


def test_search_clips_huge_lines_and_honours_time_budget(tmp_path: Path) -> None:
    store = _store(tmp_path)
    oid = _put(store, b"a" * 10000 + b"NEEDLE" + b"b" * 10000 + b"\nx\n")
    m = store.search(oid, "NEEDLE")["matches"][0]
    assert "NEEDLE" in m["text"] and len(m["text"]) == 2002
    assert m["text"].startswith("\u2026") and m["text"].endswith("\u2026")

    huge = b"q" * (3 << 20)  # longer than a read block: searched in segments, memory stays bounded
    seg = _put(store, b"start\r\n" + huge + b"NEEDLE tail\r\n" + huge[:100] + b"\nNEEDLE again\r\nend")
    hits = store.search(seg, "NEEDLE|^start$|^end$", context=1)["matches"]
    assert [h["line"] for h in hits] == [1, 2, 4, 5]
    assert hits[1]["text"].endswith("NEEDLE tail") and hits[1]["text"].startswith("\u2026")
    assert hits[1]["before"] == ["start"] and hits[1]["after"] == ["q" * 100]
    assert (hits[2]["text"], hits[3]["text"]) == ("NEEDLE again", "end")
    assert len(hits[0]["after"][0]) == 2001  # context lines are capped too

    big = _put(store, b"row\n" * 3000000)  # 12 MB: several blocks of the block scan
    r = store.search(big, "row", max_matches=1000, time_budget=1e-9)
    assert r["more"] and 0 < r["scanned_lines"] < 3000000 and r["next_cursor"] is not None
    for pattern, context in (("^nothing$", 0), ("^nothing$", 1), ("(?=nothing)", 0)):  # block scan, line loop x2
        r = store.search(big, pattern, context=context, time_budget=1e-9)
        assert r["more"] and 0 < r["scanned_lines"] < 3000000 and r["matches"] == [], (pattern, context)
        again = store.search(big, pattern, context=context, cursor=r["next_cursor"])
        assert again["scanned_lines"] == 3000000 - r["scanned_lines"] and not again["more"]


def test_block_scan_finds_exactly_what_the_line_loop_finds(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lines = [b"alpha beta", b"", b"  gamma\tdelta  ", b"beta", b"caf\xc3\xa9 \xff broken", b"end beta"] * 5000
    oid = _put(store, b"\n".join(lines) + b"\r\nlast beta")
    patterns = [
        "beta",
        "^beta$",
        "a\\s+b",
        "^$",
        "\\s$",
        "beta$",
        "caf\u00e9",
        "\ufffd",
        "(?i:ALPHA)",
        "a.*b",
        "\\bend\\b",
        "x^",
        "a\\s*$",
        "[^a-z]+$",
    ]
    for pattern in patterns:
        for max_matches in (1, 7, 1000):
            fast = store.search(oid, pattern, max_matches=max_matches)
            slow = store.search(oid, "(?=)(?:" + pattern + ")", max_matches=max_matches)  # a lookaround: line loop
            assert [(m["line"], m["text"]) for m in fast["matches"]] == [
                (m["line"], m["text"]) for m in slow["matches"]
            ], (pattern, max_matches)
            assert (fast["more"], fast["next_cursor"], fast["scanned_lines"]) == (
                slow["more"],
                slow["next_cursor"],
                slow["scanned_lines"],
            ), (pattern, max_matches)


def test_search_on_unfinished_output_skips_partial_line(tmp_path: Path) -> None:
    store = _store(tmp_path)
    w = store.create("cmd")
    w.write(b"x1\nx2\nx")
    r = store.search(w.output_id, "x")
    assert [m["line"] for m in r["matches"]] == [1, 2]
    assert (r["more"], r["finished"]) == (False, False) and r["next_cursor"] is not None
    w.write(b"3\ny\n")
    w.close()
    r2 = store.search(w.output_id, "x", cursor=r["next_cursor"])
    assert [(m["line"], m["text"]) for m in r2["matches"]] == [(3, "x3")]
    assert r2["next_cursor"] is None


def test_search_argument_errors(tmp_path: Path) -> None:
    store = _store(tmp_path)
    oid = _put(store, b"x\n")
    with pytest.raises(StoreError) as e:
        store.search(oid, "(unclosed")
    assert _code(e) == "bad_regex"
    assert "missing )" in e.value.message and "(unclosed" in e.value.message
    bad_kwargs: list[dict[str, Any]] = [
        {"context": 21},
        {"context": -1},
        {"max_matches": 0},
        {"max_matches": 1001},
        {"time_budget": 0},
    ]
    for kw in bad_kwargs:
        with pytest.raises(StoreError) as e:
            store.search(oid, "x", **kw)
        assert _code(e) == "bad_argument"
    bad_page: list[dict[str, Any]] = [{"max_bytes": 0}, {"max_lines": 0}, {"max_bytes": True}]
    for kw in bad_page:
        with pytest.raises(StoreError) as e:
            store.page(oid, **kw)
        assert _code(e) == "bad_argument"


# ---------------------------------------------------------------- caps and quota


def test_per_output_truncation_marker_flag_and_sha256(tmp_path: Path) -> None:
    store = _store(tmp_path, max_output_bytes=1000)
    w = store.create("cmd")
    content = b"".join(b"%03d" % i + b"z" * 146 + b"\n" for i in range(20))  # 150-byte lines
    for i in range(0, len(content), 250):
        w.write(content[i : i + 250])
    w.write(b"dropped\n")
    meta = w.close(exit_status=0)

    marker = b"\n[crashfleet: output truncated at 1000 bytes (max_output_bytes)]\n"
    stored = content[:1000] + marker
    assert (tmp_path / "store" / w.output_id / "data").read_bytes() == stored
    assert meta["truncated"] is True
    assert (meta["bytes"], meta["bytes_seen"], meta["lines"]) == (len(stored), len(content) + 8, 8)
    assert meta["sha256"] == hashlib.sha256(stored).hexdigest()
    last = store.page(w.output_id, line=-1)
    assert last["text"] == marker[1:].decode() and last["truncated"] is True
    on_disk = json.loads((tmp_path / "store" / w.output_id / "meta.json").read_text())
    assert on_disk == meta

    same = store.create("cmd")  # identical stored bytes -> identical sha256
    same.write(content)
    assert same.close()["sha256"] == meta["sha256"]


def test_total_quota_evicts_oldest_finished_never_unfinished(tmp_path: Path) -> None:
    store = _store(tmp_path, max_total_bytes=10000)
    u = store.create("u")  # oldest, but never finished
    u.write(b"u" * 999 + b"\n")
    a = _put(store, b"a" * 3000)
    b = _put(store, b"b" * 3000)
    assert store.total_bytes() == 3 * 8 + 1000 + 8 + 3000 + 3000
    c = store.create("c")
    c.write(b"c" * 3000)  # needs room: evicts a, the oldest finished
    with pytest.raises(StoreError) as e:
        store.info(a)
    assert _code(e) == "unknown_output"
    assert not (tmp_path / "store" / a).exists()
    assert store.info(b)["finished"] and store.info(u.output_id)["bytes"] == 1000
    assert store.info(c.output_id)["truncated"] is False
    assert store.total_bytes() <= 10000

    u.write(b"v" * 20000)  # evicts b, then nothing finished is left
    assert [m["output_id"] for m in store.list()] == [c.output_id, u.output_id]
    meta = u.close()
    assert meta["truncated"] is True
    assert (tmp_path / "store" / u.output_id / "data").read_bytes().endswith(b"(max_total_bytes)]\n")
    assert store.page(c.output_id)["text"] == "c" * 3000
    assert store.total_bytes() <= 10000 + 100  # the marker may overshoot slightly
    c.close()

    smaller = Store(str(tmp_path / "store"), max_total_bytes=4000)
    smaller.create("d").close()  # create evicts the oldest finished (u) until under the cap
    assert [m["kind"] for m in smaller.list()] == ["d", "c"]
    assert smaller.total_bytes() <= 4000


# ---------------------------------------------------------------- restart

_CRASHING_WRITER = textwrap.dedent("""
    import os, sys
    from crashfleet.agent.store import Store
    w = Store(sys.argv[1]).create("crash", {"host": "h1"})
    w.write(b"one\\ntwo\\nthr")
    print(w.output_id, flush=True)
    os._exit(0)   # the agent dies without closing
""")


def test_reload_after_restart_marks_interrupted_and_repairs_index(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    store = Store(root)
    done = store.create("done", {"n": 1})
    done.write(b"kept\nalso\n")
    done_meta = done.close(exit_status=0)
    page_cursor = store.page(done.output_id, max_lines=1)["next_cursor"]
    oid = subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, root], check=True, capture_output=True, text=True
    ).stdout.strip()
    index = Path(root, oid, "index")
    assert len(index.read_bytes()) == 24
    with open(index, "r+b") as f:  # simulate dying between the data and index writes
        f.truncate(12)

    restarted = Store(root)
    meta = restarted.info(oid)
    assert (meta["finished"], meta["interrupted"], meta["lines"], meta["bytes"]) == (True, True, 3, 11)
    assert meta["sha256"] == hashlib.sha256(b"one\ntwo\nthr").hexdigest()
    assert (meta["meta"], meta["kind"], meta["exit_status"]) == ({"host": "h1"}, "crash", None)
    assert json.loads(Path(root, oid, "meta.json").read_text())["interrupted"] is True
    assert restarted.page(oid)["text"] == "one\ntwo\nthr" and restarted.page(oid)["next_cursor"] is None
    assert len(index.read_bytes()) == 24
    assert restarted.info(done.output_id) == done_meta
    assert page_cursor is not None
    assert restarted.page(done.output_id, page_cursor)["text"] == "also\n"  # cursors survive restarts
    assert {m["output_id"] for m in restarted.list()} == {oid, done.output_id}
    assert restarted.total_bytes() == 10 + 24 + 11 + 24


def test_root_created_private(tmp_path: Path) -> None:
    Store(str(tmp_path / "a" / "root"))
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "root").st_mode) == 0o700


# ---------------------------------------------------------------- errors and lifecycle


def test_ids_cursors_and_errors(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a = _put(store, b"".join(b"%d\n" % i for i in range(100)))
    b = _put(store, b"".join(b"%d\n" % i for i in range(100)))
    assert len(a) == 10 and all(ch in "0123456789abcdef" for ch in a) and a != b

    upper = "A" + a[1:].upper()  # never a valid id (a.upper() is one when a is all digits)
    for bad in ("../../etc", "../" + a, upper, a + "\n", a[:9], "", "0" * 10 + "/x"):
        with pytest.raises(StoreError) as e:
            store.page(bad)
        assert _code(e) == "bad_argument"
    with pytest.raises(StoreError) as e:
        store.delete("../store")
    assert _code(e) == "bad_argument" and (tmp_path / "store").is_dir()
    with pytest.raises(StoreError) as e:
        store.info("0123456789")
    assert _code(e) == "unknown_output"

    cur_a = store.page(a, max_lines=10)["next_cursor"]
    assert store.page(a, cur_a, max_lines=1)["text"] == "10\n"
    with pytest.raises(StoreError) as e:
        store.page(b, cur_a)  # foreign cursor
    assert _code(e) == "bad_cursor" and "start over" in e.value.message
    with pytest.raises(StoreError) as e:
        store.search(a, "1", cursor=cur_a)  # page cursor handed to search
    assert _code(e) == "bad_cursor"
    for junk in ("garbage", "1.0", cur_a[:-1] + ("0" if cur_a[-1] != "0" else "1"), "0.0.00000000"):
        with pytest.raises(StoreError) as e:
            store.page(a, junk)
        assert _code(e) == "bad_cursor"
    out = store._outputs[a]  # forge a well-formed cursor past the end
    for stale in (store._cursor(out, "p", 500), store._cursor(out, "p", 5, 9)):
        with pytest.raises(StoreError) as e:
            store.page(a, stale)
        assert _code(e) == "stale_cursor" and "call page without a cursor" in e.value.message

    store.delete(a)
    with pytest.raises(StoreError) as e:
        store.page(a, cur_a)
    assert _code(e) == "unknown_output"


def test_lifecycle_list_delete_context_manager(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(RuntimeError):
        with store.create("ctx", {"argv": ["crash"]}) as w:
            w.write(b"partial\n")
            raise RuntimeError("boom")
    meta = store.info(w.output_id)
    assert (meta["finished"], meta["error"], meta["meta"]) == (True, "RuntimeError: boom", {"argv": ["crash"]})
    assert w.close() == meta  # closing twice is harmless
    with pytest.raises(ValueError):
        w.write(b"late")

    ids = [_put(store, b"x\n", kind="k%d" % i) for i in range(3)]
    assert [m["output_id"] for m in store.list()] == ids[::-1] + [w.output_id]
    before = store.total_bytes()
    live = store.create("live")
    live.write(b"data\n")
    store.delete(live.output_id)  # delete while a writer is still attached
    live.write(b"more\n")  # counted, not stored, no error
    assert live.close()["bytes_seen"] == 10
    assert not (tmp_path / "store" / live.output_id).exists()
    assert store.total_bytes() == before
    with pytest.raises(StoreError) as e:
        store.delete(live.output_id)
    assert _code(e) == "unknown_output"
    with pytest.raises(StoreError) as e:
        store.create("k", {"bad": object()})
    assert _code(e) == "bad_argument"


# ---------------------------------------------------------------- big output: memory and time

_MEASURE = textwrap.dedent("""
    import json, resource, sys, time
    from crashfleet.agent.store import Store
    store = Store(sys.argv[1], max_output_bytes=256 << 20, max_total_bytes=1 << 30)
    oid = sys.argv[2]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    page = store.page(oid, line=-100)
    t1 = time.perf_counter()
    found = store.search(oid, "needle", context=5, time_budget=60)
    t2 = time.perf_counter()
    grow = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(json.dumps({"page_s": t1 - t0, "search_s": t2 - t1, "rss_growth_kb": grow,
                      "page_next": page["next_cursor"], "page_end": page["end_line"],
                      "hits": [m["line"] for m in found["matches"]], "more": found["more"],
                      "scanned": found["scanned_lines"]}))
""")


def test_big_output_page_and_search_memory(tmp_path: Path) -> None:
    store = _store(tmp_path, max_output_bytes=256 << 20, max_total_bytes=1 << 30)
    line = b"w" * 99 + b"\n"
    chunk = line * ((8 << 20) // len(line))
    w = store.create("big")
    while store.info(w.output_id)["bytes"] < 200 << 20:
        w.write(chunk)
    w.write(b"the needle line\n")
    meta = w.close(exit_status=0)
    assert meta["bytes"] > 200 << 20 and not meta["truncated"]
    n = meta["lines"]

    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        last = store.page(w.output_id, line=-100)
        page_s = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (last["end_line"], last["next_cursor"], last["text"][-16:]) == (n, None, "the needle line\n")
    assert peak < 1 << 20 and page_s < 0.5

    res = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path / "store"), w.output_id],
        check=True,
        capture_output=True,
        text=True,
    )
    got = json.loads(res.stdout)
    assert (got["page_next"], got["page_end"], got["hits"], got["more"], got["scanned"]) == (None, n, [n], False, n)
    assert got["rss_growth_kb"] < 20 * 1024
    print(
        "\n200MB output, %d lines: last page %.2f ms (tracemalloc peak %d KB); "
        "full search %.2f s; RSS growth page+search %d KB"
        % (n, got["page_s"] * 1000, peak // 1024, got["search_s"], got["rss_growth_kb"])
    )
