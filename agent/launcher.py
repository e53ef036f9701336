"""The first code that runs on a host when the controller pushes the agent: often as root.

The controller starts `[sudo -n] PYTHON -I -c STAGE1 N DIR NAME SHA256 SIZE` (one SSH exec per
host, agent installed or not) and writes this file's source (N bytes) to its stdin; STAGE1
reads and runs it. It then
  1. checks the agent dir DIR (`~` is the home of the user it runs as: root's under sudo) and
     every component of its path, as given and resolved: owned by root or that user, not
     writable by group or others (a root-owned sticky ancestor such as /tmp is fine: nobody
     else can rename what is in it), symlinks only when owned by them; else it refuses (exit 4);
  2. reads DIR/NAME and compares its sha256 with SHA256 (never the size). When it is missing
     or differs it says `need` on stdout and reads exactly SIZE bytes from stdin, checks their
     hash, and writes them to DIR/NAME (temp file 0600, then rename; older builds removed);
  3. checks the file once more, says `ok`, and runs the agent from it in this same process
     (no second Python start-up); from then on stdin/stdout carry JSON-RPC.
So root never runs a file another user could write, and nothing is uploaded to a place such
a user controls: the bytes travel over the exec's own stdin. `-I` keeps the login user's
cwd, PYTHONPATH and user site out of sys.path; the command line stays short (sudo logs it).
Any Python >= 3.6 gets as far as exit 3 and a message when it is too old; stdlib only.
"""

import hashlib
import os
import pwd
import re
import stat
import sys
from typing import List, NoReturn, Optional, Set

SAYS = b"crashfleet-launcher: "  # every line it writes to stdout starts so
NEED, OK = SAYS + b"need\n", SAYS + b"ok\n"
OLD_PYTHON, UNSAFE_DIR, BAD_UPLOAD = 3, 4, 5  # exit statuses the controller maps to errors
MAX_ZIPAPP = 64 << 20
# Reads the launcher's source (argv[1] bytes) from stdin and runs it as __main__.
STAGE1 = (
    "import os,sys\nn=int(sys.argv.pop(1));b=b''\nwhile len(b)<n:\n c=os.read(0,n-len(b))\n"
    " if not c:sys.exit(%d)\n b+=c\nexec(compile(b,'crashfleet-launcher','exec'))" % BAD_UPLOAD
)
NAME_RE = re.compile(r"crashfleet-agent-[0-9a-f]{6,64}\.pyz\Z")


def trusted_uids() -> Set[int]:
    """Who may own what this process runs: root and the user it runs as."""
    return {0, os.geteuid()}


def dir_problem(path: str) -> Optional[str]:
    """Why code must not run from the directory `path`, or None (missing tail components are fine)."""
    trusted = trusted_uids()
    for candidate in (os.path.abspath(path), os.path.realpath(path)):
        parts = _prefixes(candidate)
        for i, part in enumerate(parts):
            try:
                info = os.lstat(part)
            except FileNotFoundError:
                break  # created later, by this user
            except OSError as exc:
                return "cannot check %s: %s" % (part, exc.strerror)
            problem = _component_problem(part, info, trusted, i == len(parts) - 1)
            if problem:
                return problem
    return None


def _prefixes(path: str) -> List[str]:
    """'/a/b' -> ['/', '/a', '/a/b']."""
    parts, out = [p for p in path.split("/") if p], ["/"]
    for i in range(len(parts)):
        out.append("/" + "/".join(parts[: i + 1]))
    return out


def _component_problem(path: str, info: os.stat_result, trusted: Set[int], last: bool) -> Optional[str]:
    owner = _user(info.st_uid)
    if stat.S_ISLNK(info.st_mode):
        return None if info.st_uid in trusted else "%s is a symlink owned by %s" % (path, owner)
    if not stat.S_ISDIR(info.st_mode):
        return "%s is not a directory" % path
    if info.st_uid not in trusted:
        return "%s is owned by %s, not by %s" % (path, owner, " or ".join(_user(uid) for uid in sorted(trusted)))
    sticky_ancestor = not last and info.st_uid == 0 and bool(info.st_mode & stat.S_ISVTX)
    if info.st_mode & 0o022 and not sticky_ancestor:
        return "%s is writable by group or others (mode %04o)" % (path, stat.S_IMODE(info.st_mode))
    return None


def _user(uid: int) -> str:
    try:
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid %d" % uid


def expand(given: str) -> str:
    """`~`, `~/x` and relative paths are from the home of the user this runs as."""
    home = pwd.getpwuid(os.geteuid()).pw_dir
    if given == "~" or given.startswith("~/"):
        given = home + given[1:]
    return os.path.normpath(os.path.join(home, given))


def verified(path: str, digest: str) -> bool:
    """True when `path` is a regular file of ours, not writable by others, with this sha256."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid not in trusted_uids()
            or info.st_mode & 0o022
            or info.st_size > MAX_ZIPAPP
        ):
            return False
        return hashlib.sha256(_read_all(fd, info.st_size)).hexdigest() == digest
    finally:
        os.close(fd)


def _read_all(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(size: int, digest: str) -> bytes:
    """Ask the controller for the zipapp and read exactly `size` bytes of it from stdin."""
    if not 0 < size <= MAX_ZIPAPP:
        fail(BAD_UPLOAD, "zipapp size %d is out of range" % size)
    os.write(1, NEED)
    data = _read_all(0, size)
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        fail(BAD_UPLOAD, "the zipapp sent does not match its sha256 (%d of %d bytes read)" % (len(data), size))
    return data


def install(directory: str, name: str, data: bytes) -> None:
    """Write atomically (no half-written agent is ever run), then drop other builds."""
    path = os.path.join(directory, name)
    tmp = os.path.join(directory, ".%s.%d.tmp" % (name, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)
    for other in os.listdir(directory):
        if NAME_RE.match(other) and other != name:
            try:
                os.unlink(os.path.join(directory, other))
            except OSError:
                pass


def fail(status: int, message: str) -> NoReturn:
    sys.stderr.write("crashfleet-launcher: %s\n" % message)
    sys.stderr.flush()
    sys.exit(status)


def prepare(given: str, name: str, digest: str, size: int) -> str:
    """Steps 1 and 2 of the module doc: the checked agent dir holds a verified NAME; returns the dir."""
    if not NAME_RE.match(name) or not re.match(r"[0-9a-f]{64}\Z", digest):
        fail(BAD_UPLOAD, "bad zipapp name or digest: %r %r" % (name, digest))
    directory = expand(given)
    for _ in range(2):  # before creating what is missing, and after
        problem = dir_problem(directory)
        if problem:
            fail(UNSAFE_DIR, "refusing agent dir %s: %s" % (directory, problem))
        os.makedirs(directory, 0o700, exist_ok=True)
    path = os.path.join(directory, name)
    if not verified(path, digest):
        install(directory, name, receive(size, digest))
        if not verified(path, digest):
            fail(BAD_UPLOAD, "%s does not match its sha256 after it was written" % path)
    return directory


def main(argv: List[str]) -> int:
    if sys.version_info < (3, 8):  # noqa: UP036 - launcher.py runs on whatever python3 a host has
        sys.stderr.write("crashfleet agent needs Python >= 3.8, this is %s\n" % sys.version.split()[0])
        return OLD_PYTHON
    given, name, digest, size = argv[1:5]
    directory = prepare(given, name, digest, int(size))
    os.chdir(directory)
    sys.path.insert(0, os.path.join(directory, name))
    os.write(1, OK)
    from crashfleet.agent.main import main as agent_main  # from the zipapp just verified

    return agent_main(["serve", "--dir", directory] + argv[5:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
