"""A rig of N real OpenSSH sshd "hosts" on loopback addresses, for tests and benchmarks.

Host i (1..n, n <= 200) is named <prefix>NN and listens on 127.0.0.(10+i):port.
Layout under base:

    id_ed25519[.pub]   client key; authorized_keys holds its public half
    known_hosts        "[127.0.0.11]:2222 ssh-ed25519 AAAA..." per host (original keys)
    inventory.yml      Ansible YAML: all.children.<prefix>.hosts.<name>
    rig.json           pids and paths, so `Rig.load(base).down()` works from another process
    hosts/<name>/      sshd_config, ssh_host_ed25519_key, sshd.pid, sshd.log, agent/

Per-connection sshd children (OpenSSH 9.2) are titled "sshd: [accepted]",
"sshd: root [priv]", "sshd: root@notty" (the listener itself shows
"sshd: /usr/sbin/sshd -D -f CONFIG -E LOG [listener] ...") and call setsid(),
so only the listener names the config.  The rig therefore finds a host's
sessions as /proc descendants of its verified listener pid *before* stopping
it, and stops/pauses them with it.  Orphans of an already dead listener are
left alone: sshd exits when its client disconnects.

By hand:  python -m tests.rig up 50 --dir /tmp/crashfleet-rig  (then down / status)
"""

from .files import RigError
from .rig import Rig, RigHost, environment_problem, free_port

__all__ = ["Rig", "RigError", "RigHost", "environment_problem", "free_port"]
