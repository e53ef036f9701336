"""Isolated rig hosts: sshd in its own mount namespace, the machine's files behind overlays.

A deployment test (Ansible, `crashfleet bootstrap`) creates users and writes
/etc, /opt, /var... on its "host". An isolated rig host runs its sshd under
`unshare --mount --propagation private`, with every tree such a test may write
mounted as an overlay whose lower layer is the real tree and whose upper layer
is <host dir>/ns/<tree>.upper. Everything the host's sessions write lands
there (readable from outside for assertions); the real /etc, /opt, /usr, users
and dpkg state stay untouched, and the mounts vanish with the last process of
the namespace. /run and /root are fresh tmpfs (root's real dotfiles, e.g. a
pyenv init in .bashrc, stay out), and tracefs starts unmounted, as after a boot
of a machine that does not mount it.
"""

from __future__ import annotations

from pathlib import Path

UNSHARE = "/usr/bin/unshare"
OVERLAID = ("etc", "opt", "home", "var", "usr", "srv")
# $1 = ns dir, then the sshd argv. `exec` keeps the pid: unshare execs sh, sh execs sshd.
SCRIPT = """set -eu
ns=$1; shift
for tree in %s; do
    mkdir -p "$ns/$tree.upper" "$ns/$tree.work"
    mount -t overlay overlay -o "lowerdir=/$tree,upperdir=$ns/$tree.upper,workdir=$ns/$tree.work" "/$tree"
done
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0700 tmpfs /root
mkdir -p /run/sshd
umount /sys/kernel/tracing 2>/dev/null || true
exec "$@"
""" % " ".join(OVERLAID)


def isolated_argv(ns_dir: Path, sshd_argv: list[str]) -> list[str]:
    """The argv that starts sshd_argv inside a fresh private mount namespace."""
    for tree in OVERLAID:
        if ns_dir.is_relative_to(f"/{tree}"):
            raise ValueError(f"the rig's dir {ns_dir} must not lie under the overlaid /{tree}")
    return [
        UNSHARE,
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        SCRIPT,
        "sh",
        str(ns_dir),
        *sshd_argv,
    ]


def upper(ns_dir: Path, path: str) -> Path:
    """Where a file the host wrote at `path` (e.g. /etc/sudoers.d/x) is seen from outside."""
    tree, _, rest = path.lstrip("/").partition("/")
    if tree not in OVERLAID:
        raise ValueError(f"{path} is not under an overlaid tree ({', '.join(OVERLAID)})")
    return ns_dir / f"{tree}.upper" / rest
