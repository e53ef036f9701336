"""The debuginfod download child: `PYTHON -I -S -c SOURCE BUILD_ID PART ROOM URL...`.

Run by the agent inside its sandbox (write: only the build id's cache dir; TCP
connect: only the servers' ports). Tries each server in turn, streams the file
to PART, prints JSON progress lines on stdout and one error line on stderr.
The agent verifies the build id and renames PART; this child never does.
"""

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Dict

CONNECT_TIMEOUT = 10.0  # a server that does not answer is skipped quickly
CHUNK = 1 << 20
PROGRESS_EVERY = 0.5


def fetch(url: str, build_id: str, part: str, room: int) -> int:
    """Download one server's debuginfo for build_id into part; the bytes written."""
    address = "%s/buildid/%s/debuginfo" % (url.rstrip("/"), build_id)
    request = urllib.request.Request(address, headers={"User-Agent": "crashfleet-agent"})
    with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT) as answer:
        total = int(answer.headers.get("Content-Length") or 0)
        if total > room:
            raise OverflowError("the file is %d bytes, the debuginfo cache has room for %d" % (total, room))
        say({"url": url, "total": total})
        got, last = 0, 0.0
        with open(part, "wb") as out:
            for chunk in iter(lambda: answer.read(CHUNK), b""):
                got += len(chunk)
                if got > room:
                    raise OverflowError("the file grew past the %d bytes the cache has room for" % room)
                out.write(chunk)
                if time.monotonic() - last >= PROGRESS_EVERY:
                    last = time.monotonic()
                    say({"got": got, "total": total})
        if total and got != total:
            raise IOError("the server sent %d of %d bytes" % (got, total))
    return got


def say(message: Dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return "HTTP %d %s" % (exc.code, "(the server has no such build id)" if exc.code == 404 else exc.reason)
    if isinstance(exc, urllib.error.URLError):
        return "unreachable: %s" % (getattr(exc.reason, "strerror", None) or exc.reason)
    if isinstance(exc, socket.timeout):
        return "no answer within %gs" % CONNECT_TIMEOUT
    return "%s: %s" % (type(exc).__name__, exc)


def main() -> int:
    build_id, part, room, urls = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    failures = []
    for url in urls:
        try:
            got = fetch(url, build_id, part, room)
        except BaseException as exc:  # noqa: BLE001 - the next server, and a clear line at the end
            failures.append("%s: %s" % (url, reason(exc)))
            try:
                os.unlink(part)
            except OSError:
                pass
            if isinstance(exc, KeyboardInterrupt):
                break
            continue
        say({"done": True, "url": url, "bytes": got})
        return 0
    sys.stderr.write("no debuginfod server gave build id %s: %s\n" % (build_id, "; ".join(failures)))
    return 1


if __name__ == "__main__":
    sys.exit(main())
