"""crash_grammar and pipes.parse: what the agent sends to crash, and what it refuses (and why).

Accepted lines are real-world crash usage; refused ones are written as an attacker would.
Tests against the real crash are in tests/security/test_crash_layer1.py.
"""

from __future__ import annotations

import re

import pytest

from crashfleet.agent import protocol
from crashfleet.agent.dumps import crash_grammar as g
from crashfleet.agent.dumps import pipes
from crashfleet.agent.errors import AgentError

ACCEPTED = """
bt
bt -a
bt -c 0
bt -c 1,8,9-14
bt -f 1
bt -F -F
bt -l
bt -s -x
bt -sx
bt -t
bt -T 1
bt -p
bt -e
bt -E
bt -v
bt -g 1
bt -n idle
bt -R sysrq_handle_crash
bt -I sysrq_handle_crash -S ffffc90000013d18
bt ffff888003df8000
bt 1 2 3
log
log -T
log -t
log -m
log -d
log -a
log -s
sys
sys -c
sys -c write
sys -c 1
sys -t
sys -i
sys config
ps
ps -k
ps -u
ps -G
ps -s
ps -p 1
ps -c 1
ps -t
ps -l
ps -m
ps -l -C a
ps -m -C 0,1
ps -a 1
ps -g
ps -r 1
ps -S
ps -A
ps -y NORMAL,FIFO
ps init
ps kworker/0:1H
ps 'cf-.*'
ps '^kworker/[0-9]+:.*'
ps \\1
ps "Web Content"
ps 1 ffff888003df8000 init
task
task 1
task -R comm,pid
task -R se.vruntime,comm -x 1
task -d 1
files
files 1
files -c
files -d ffff888003d4d500
files -R /var/log/syslog
vm
vm 1
vm -m 1
vm -v
vm -p 1
vm -f 0x875
vm -R /lib/x86_64-linux-gnu/libc.so.6
kmem -i
kmem -s
kmem -s task_struct
kmem -s kmalloc-64
kmem -S kmalloc-64
kmem -S=0 kmalloc-64
kmem -S=a dentry
kmem -r
kmem -v
kmem -V
kmem -z
kmem -o
kmem -h
kmem -n
kmem -f
kmem -F
kmem ffff888003df8000
kmem -p ffffea0000000000
kmem -m flags,_refcount ffffea0000000000
kmem -g 0x100
kmem -I kmalloc-64,kmalloc-128 -s
kmem -P 3df8000
struct task_struct
struct task_struct.comm ffff888003df8000
struct task_struct.comm,pid ffff888003df8000
struct task_struct.se.vruntime,thread_info ffff888003df8000
struct task_struct.comm ffff888003df8000 2
struct task_struct -c 2 init_task
struct task_struct -c -2 init_task
struct list_head -l task_struct.tasks ffff888003df8000
struct -o list_head
struct task_struct -o -x
struct -p task_struct.mm init_task
struct rq.nr_running runqueues:a
struct rq.nr_running runqueues:0,1
struct rq.nr_running runqueues:
union thread_union
union -o thread_union
*task_struct.comm init_task
* task_struct.comm init_task
size list_head
p jiffies
p -x jiffies
p -d jiffies
p -u jiffies
px jiffies
pd jiffies
p init_task.comm
p &init_task
p sizeof(struct task_struct)
p (struct task_struct *)0xffff888003df8000
p ((struct task_struct *)0xffff888003df8000)[0].pid
p jiffies == 0
p *(&init_task)
p irq_stat:0
p irq_stat:a
p init_task.pid + 1
p 4 / 2
p {int}0xffffffff82a079c0
p *init_task.comm@4
p jiffies & 0xff
p (jiffies % 100) ^ 3
p jiffies ? 1 : 2
p ~0
whatis jiffies
whatis struct task_struct
whatis union thread_union
whatis task_struct
whatis -o list_head
whatis -r 16
whatis -r 16-32
whatis -m list_head
sym jiffies
sym ffffffff82a079c0
sym -q sysrq_handle
sym -p jiffies
sym -n jiffies
sym -M
sym -l
sym -m qemu_fw_cfg
sym __func__.12 foo.isra.0 bar.cold
dis sysrq_handle_crash
dis -l sysrq_handle_crash 4
dis -r sysrq_handle_crash+0x16
dis -f sysrq_handle_crash
dis -u 401000 10
dis (sysrq_handle_crash + 16) 2
dis 0xffffffff816a89f0 5
rd jiffies
rd jiffies 4
rd -64 jiffies 4
rd -32 jiffies 4
rd -16 jiffies 4
rd -8 jiffies 4
rd -1 6 jiffies 4
rd -s init_task 8
rd -S init_task 8
rd -SS init_task 8
rd -a linux_banner
rd -a linux_banner 64
rd -p 0 8
rd -p -64 0 30000000
rd -x jiffies 4
rd -d jiffies 2
rd -D jiffies 2
rd -o 8 jiffies 2
rd -e ffffffff82a079e0 jiffies
rd -R jiffies 4
rd -N -32 jiffies 1
rd -f 0 16
rd (jiffies) 1
rd jiffies+8 1
rd -- jiffies 4
mod
mod -t
lsmod
net
net -a
net -s
net -s 1
net -S 1
net -n
net -n 1
net -N 0x0100007f
net -N 16777343
net -s -R 5 1
dev
dev -d
dev -D
dev -p
dev -i
dev -V
irq
irq -u
irq -b
irq -a
irq -s
irq -s -c 0
irq -d
irq 1 4
runq
runq -t
runq -T
runq -m
runq -g
runq -c 0
runq -c 0-1
timer
timer -r
timer -C 0
mount
mount -n 1
mount /
mount /proc
mount sda1
mount ffff888003dbb000
mount -i
sig
sig 1
sig -l
sig -s 0x100
sig -g 1
swap
tree -t xarray -N ffff888003dbb000
tree -t rbtree -o vmap_area.rb_node -s vmap_area.va_start vmap_area_root
tree -t radix -p -r address_space.i_pages ffff888003dbb000
tree -l -x vmap_area_root
list task_struct.tasks -s task_struct.pid -h init_task
list -H modules
list -H modules -s module.name
list -o task_struct.tasks -h init_task
list -r -H modules
list -B -H modules
list -S task_struct.pid -l task_struct.tasks -H init_task.tasks
list 0 ffff888003dbb000
list -e ffff888003dbb000 ffff888003dbb100
search -c sysrq
search -c "sysrq triggered" "crash"
search -k -l 0x1000 0
search -s init_task -l 0x100 0xffff888003df8000
search -u deadbeef
search -p -w cafe
search -t ffff888003df8000
search -T -x 2 ffff888003df8000
search -m 0xffff 0xdead0000
search (jiffies + 1)
search init_task
foreach bt
foreach task -R pid
foreach files
foreach files -c
foreach vm
foreach vm -m
foreach net -s
foreach net -S -R 5
foreach ps
foreach ps -G
foreach sig -g
foreach set
foreach init bt
foreach 1 2 ffff888003df8000 bt
foreach 1 task -R comm
foreach RU bt
foreach UN bt -l
foreach \\DE bt
foreach kernel ps
foreach user bt
foreach gleader ps
foreach active bt
for bt -r
foreach bt -r -t -l -e -f -F -o -s -x
foreach 'cf-.*' ps
foreach \\bt ps
foreach vtop ffff888003df8000
foreach vtop -u 401000
foreach -y FIFO ps
help
help bt
help all
help *
man log
?
ascii 62696c2f7273752f
ascii 0x41 42
eval 1 + 2
eval (1 + 2)
eval 1 - -1
eval -b 0x10
eval -l 10
eval -lb 10
eval -b -l 10
eval jiffies
eval 4k
mach
mach -c
mach -m
mach -x -c
ptov 1000
ptov 0:a
ptov 0:0-1
vtop ffff888003df8000
vtop -c 1 ffff888003df8000
vtop -k ffff888003df8000
vtop -u 401000
pte 0x80000000000001e3
ptob 10
btop 0x100000
waitq 0
waitq ffff888003dbb000
waitq log_wait
waitq task_struct.children ffff888003df8000
ipcs
ipcs -s
ipcs -m
ipcs -M
ipcs -q
ipcs -n 1
ipcs 0
fuser /
fuser /var/log/syslog
fuser ffff888003dbb000
set
set 1
set ffff888003df8000
set -p
set -c 0
set -v
set radix
set radix 10
set radix 16
hex
dec
bpf
bpf -p 3
bpf -m 4 -j
""".strip().splitlines()


def refused(line: str) -> AgentError:
    with pytest.raises(AgentError) as info:
        pipes.parse(line)
    err = info.value
    assert err.kind == protocol.REFUSED and err.extra["rule"].startswith("crash."), (line, err.extra)
    assert err.message and err.hint, line
    return err


def rule(line: str) -> str:
    return str(refused(line).extra["rule"])


@pytest.mark.parametrize("line", ACCEPTED)
def test_real_world_lines_are_accepted_and_sent_as_checked(line: str) -> None:
    command, filters = pipes.parse(line)
    assert filters == []
    checked = g.check(line)
    assert command == checked.text
    assert g.tokenize(command) == g.tokenize(checked.text)  # what crash gets is what was checked
    assert checked.argv[0] in g.COMMANDS


@pytest.mark.parametrize(
    "alias,expanded",
    [
        ("px jiffies", "p -x jiffies"),
        ("pd jiffies", "p -d jiffies"),
        ("for bt -r", "foreach bt -r"),
        ("size list_head", "* list_head"),
        ("dmesg", "log"),
        ("dmesg -T", "log -T"),
        ("lsmod", "mod"),
        ("hex", "set radix 16"),
        ("dec", "set radix 10"),
        ("man bt", "help bt"),
        ("?", "help"),
        ("*task_struct.comm init_task", "* task_struct.comm init_task"),
        ("  bt   -a  ", "bt   -a"),
    ],
)
def test_aliases_expand_to_the_command_sent(alias: str, expanded: str) -> None:
    assert pipes.parse(alias)[0] == expanded


@pytest.mark.parametrize(
    "alias,rule_id,why",
    [
        ("quit", "crash.command", "alias for 'q'"),
        ("sf", "crash.set", "set scroll off"),
        ("sn", "crash.set", "set scroll on"),
        ("g shell id", "crash.command", "alias for 'gdb'"),
        ("hex 10", "crash.set", "set radix 16 10"),
        ("px jiffies = 1", "crash.expression", "assignment"),
        ("for test", "crash.foreach", "test"),
        ("lsmod -s foo", "crash.option", "mod -s"),
        ("dmesg -x", "crash.option", "log has no option -x"),
        ("size -c", "crash.option-value", "-c needs"),
    ],
)
def test_aliases_are_checked_as_what_they_name(alias: str, rule_id: str, why: str) -> None:
    err = refused(alias)
    assert err.extra["rule"] == rule_id and why in err.message, err.message


@pytest.mark.parametrize(
    "line,argv",
    [
        ('foreach "a b"   (c d)e zz ((x y) z)w  "q"', ["foreach", "a b", "(c d)e", "zz", "((x y) z)w", "q"]),
        ('foreach a(b c)d "x  y" (1 + (2 3))', ["foreach", "a(b", "c)d", "x  y", "(1 + (2 3))"]),
        ("eval (1 + 2) x", ["eval", "(1 + 2)", "x"]),
        ("p sizeof(struct task_struct)", ["p", "sizeof(struct", "task_struct)"]),
        ("(a b) c", ["(a", "b)", "c"]),  # no group in the first word (tools.c:parse_line)
        ('search -c "a  b"', ["search", "-c", "a  b"]),
    ],
)
def test_tokens_follow_crash_parse_line(line: str, argv: list[str]) -> None:
    assert [t.text for t in g.tokenize(line)] == argv


CONTROL = [chr(c) for c in range(0x20)] + ["\x7f"]


@pytest.mark.parametrize("ch", CONTROL, ids=lambda ch: "0x%02x" % ord(ch))
def test_every_control_character_is_refused_anywhere(ch: str) -> None:
    code = "0x%02x" % ord(ch)
    for line in (
        "%ssys" % ch,
        "sys%s" % ch,
        "sys %s!touch /tmp/x" % ch,
        "sys -c%swrite" % ch,
        "log | grep %sx" % ch,
        "bt | head -n 3%s" % ch,
        'p "a%sb"' % ch,
    ):
        err = refused(line)
        assert err.extra["rule"] == "crash.char" and code in err.message, (line, err.message)
        assert "printable ASCII" in (err.hint or "")


@pytest.mark.parametrize(
    "line",
    [
        "sys \x15!touch /tmp/x",  # ^U: vi-mode unix-line-discard, then a shell escape
        "sys\x7f\x7f\x7f!touch /tmp/x",  # DEL erases "sys"
        "sys\x08\x08\x08!touch /tmp/x",  # ^H likewise
        "sys #\x1bI!touch /tmp/x ",  # ESC I: back to the start of the line, insert
        "sys\x1b0i!touch /tmp/x #",
        "log\r!touch /tmp/x",
        "log\n!touch /tmp/x",
        "log\x00!touch /tmp/x",
        "log\x16\x15",
    ],
)
def test_readline_editing_keys_are_refused(line: str) -> None:
    assert rule(line) == "crash.char"


@pytest.mark.parametrize("ch", ["\u00e9", "\u00a0", "\u2028", "\u200b", "\uff01", "\U0001f600", "\x80", "\xff"])
def test_non_ascii_is_refused_by_code(ch: str) -> None:
    err = refused("log | grep %s" % ch)
    assert err.extra["rule"] == "crash.char" and "U+%04X" % ord(ch) in err.message


@pytest.mark.parametrize(
    "base", ["sys -c write | grep -i x", 'search -c "a b"', "p (jiffies + 1)", "foreach 'cf-.*' ps | wc -l"]
)
def test_bang_in_every_position_is_refused(base: str) -> None:
    for pos in range(len(base) + 1):
        line = base[:pos] + "!" + base[pos:]
        assert rule(line) == "crash.shell", line


@pytest.mark.parametrize("base", ["p jiffies | head -n 1", 'search -c "x"'])
def test_redirections_in_every_position_are_refused(base: str) -> None:
    for ch in "<>":
        for pos in range(len(base) + 1):
            assert rule(base[:pos] + ch + base[pos:]) == "crash.redirect"


@pytest.mark.parametrize(
    "line",
    [
        "!",
        "!!",
        "!1",
        "!sh",
        "sys!sh",
        "sys !sh",
        "p 1 !sh",
        'p "!sh"',
        "p '!sh'",
        "log | grep '!'",
        "log | grep -v !x",
        "p (!0)",
        "! | grep x",
    ],
)
def test_shell_escapes_are_refused(line: str) -> None:
    assert rule(line) == "crash.shell"


@pytest.mark.parametrize("line", ["| sh", "|", "  | grep x", "|| sh"])
def test_a_line_starting_with_a_bar_is_refused(line: str) -> None:
    assert rule(line) == "crash.empty"  # crash would hand the rest to /bin/sh (setup_redirect)


@pytest.mark.parametrize(
    "line",
    [
        "sys > /tmp/x",
        "sys >> /tmp/x",
        "sys>/tmp/x",
        "< /tmp/cmds",
        "</tmp/cmds",
        "struct task_struct < /tmp/args",
        'p "a > b"',
        "p init_task->comm",
        "p 1 >= 0",
        "p 1 << 3",
        "log | grep '<x>'",
    ],
)
def test_redirections_and_arrows_are_refused(line: str) -> None:
    assert rule(line) == "crash.redirect"


@pytest.mark.parametrize(
    "line,rule_id",
    [
        ('p "\' | touch /tmp/x #"', "crash.quote"),  # crash pairs " with ': the | would reach a shell
        ('p "\' "', "crash.quote"),
        ("p '\" | touch /tmp/x'", "crash.quote"),
        ('p "abc', "crash.quote"),
        ('search -c "abc', "crash.quote"),
        ('search -c abc"', "crash.quote"),
        ('search -c "a"b', "crash.quote"),
        ('search -c "a""b"', "crash.quote"),
        ('search -c ""', "crash.quote"),
        ('"sys"', "crash.quote"),
        ('"sys" -c', "crash.quote"),
        ('s"ys"', "crash.quote"),
        ('p "jiffies"', "crash.quote"),
        ('p a"b"', "crash.quote"),
        ('p "a" "b"', "crash.quote"),
        ("p 'jiffies'", "crash.quote"),
        ("p jiff'ies", "crash.quote"),
        ("p 'a' 'b'", "crash.quote"),
        ("ps 'cf-", "crash.quote"),
        ("ps cf-'", "crash.quote"),
        ("ps 'a b'", "crash.quote"),
        ("ps ''", "crash.quote"),
        ("p `id`", "crash.quote"),
        ("p `", "crash.quote"),
        ('search -c "`id`"', "crash.quote"),
        ('search -c "it\'s"', "crash.quote"),
        ('search -c "a\\b"', "crash.quote"),
        ('bt -R "sysrq_handle_crash"', "crash.quote"),
        ('"-r" /tmp/x', "crash.quote"),
        ("p \\'x", "crash.quote"),
        ("p a\\b", "crash.backslash"),
        ("p a\\", "crash.backslash"),
        ('p \\"x', "crash.quote"),
        ("ps a\\1", "crash.backslash"),
        ("p \\x", "crash.expression"),
        ("\\bt", "crash.command"),
        ("\\\\", "crash.backslash"),
        ("p (jiffies", "crash.paren"),
        ("eval (1 + (2)", "crash.paren"),
        ("p ((a) b", "crash.paren"),
        ("rd (jiffies", "crash.paren"),
        ('p "(" | head', "crash.quote"),  # the split at the first | leaves `p "(` for crash: unterminated
        ('search -c "a | b"', "crash.quote"),
        ("ps 'a|b'", "crash.quote"),
    ],
)
def test_quoting_tricks_are_refused(line: str, rule_id: str) -> None:
    assert rule(line) == rule_id, refused(line).message


def test_crash_only_receives_what_is_before_the_first_bar() -> None:
    command, filters = pipes.parse("log | grep -E 'a|b' | head -n 2")
    assert command == "log" and pipes.describe(filters) == ["grep", "head"]
    assert pipes.parse('sys | grep "PANIC|RELEASE"')[0] == "sys"
    assert pipes.parse("log|grep -c x")[0] == "log"


@pytest.mark.parametrize(
    "line,rule_id,why",
    [
        ("rd -r /tmp/x jiffies 8", "crash.option", "writes memory to a file"),
        ("rd -r/tmp/x jiffies 8", "crash.option", "rd -r is refused"),
        ("rd -xr/tmp/x jiffies 8", "crash.option", "rd -r is refused"),
        ("rd jiffies 8 -r /tmp/x", "crash.option", "rd -r is refused"),  # glibc getopt permutes
        ('rd "-r /tmp/x" jiffies 8', "crash.option", "rd -r is refused"),
        ("rd -- -r", "crash.argument", "'-r' is not"),
        ("dev -v 0 /tmp/x", "crash.option", "device dump to a file"),
        ("mod -s ext4 /tmp/ext4.ko", "crash.option", "files on the host"),
        ("mod -S /tmp", "crash.option", "mod -S is refused"),
        ("mod -S", "crash.option", "mod -S"),
        ("mod -d ext4", "crash.option", "mod -d"),
        ("mod -D", "crash.option", "mod -D"),
        ("mod -r", "crash.option", "mod -r"),
        ("mod -R", "crash.option", "mod -R"),
        ("mod -o", "crash.option", "mod -o"),
        ("mod -g", "crash.option", "mod -g"),
        ("mod -ts", "crash.option", "mod -s"),
        ("mod ext4", "crash.arguments", "at most 0"),
        ("set error /tmp/x", "crash.set", "set error"),
        ("set error redirect", "crash.set", "set error"),
        ("extend /tmp/x.so", "crash.command", "shared objects"),
        ("dis -s sysrq_handle_crash", "crash.option", "source files"),
        ("sys -panic", "crash.option", "panics"),
        ("bt -D dump", "crash.option", "unwinder"),
        ("foreach bt -i /tmp/x", "crash.option", "foreach has no option -i"),
        ("bt -i /tmp/x", "crash.option", "bt has no option -i"),
        ("kmem -S=/tmp/x", "crash.argument", "=cpus"),
        ("fuser ../../etc", "crash.argument", "a path in the dump"),
        ("files -R '/etc/shadow'", "crash.quote", "single quote"),
    ],
)
def test_options_naming_host_paths_are_refused(line: str, rule_id: str, why: str) -> None:
    err = refused(line)
    assert err.extra["rule"] == rule_id and why in err.message, err.message


def test_an_unknown_option_names_the_allowed_ones() -> None:
    err = refused("bt -Z")
    assert err.extra["rule"] == "crash.option" and "bt has no option -Z" in err.message
    assert "-a" in (err.hint or "") and "-c a cpu list" in (err.hint or "")
    assert "(no -r)" in (refused("rd -r x").hint or "")
    assert refused("log --help").message == "log has no option -- here"  # no long options in getopt()


@pytest.mark.parametrize(
    "line",
    [
        "shell id",
        "shell",
        "info registers",
        "x/s linux_banner",
        "x/8gx jiffies",
        "call panic(0)",
        "print jiffies",
        "output jiffies",
        "ptype struct task_struct",
        "dump memory /tmp/x 0 8",
        "source /tmp/x",
        "python print(1)",
        "define x",
        "pipe p 1 | sh",
        "p/x jiffies",
        "frame 1",
        "target core /x",
        "file /tmp/vmlinux",
        "add-symbol-file /tmp/x.ko 0",
        "task_struct ffff888003df8000",
        "list_head init_task",
        "#",
        "# comment",
        "//",
        "crash",
        "make",
        "sh",
        "bash",
        "env",
        "history",
        "hi",
        "h",
        "r",
        "r 3",
        "r5",
        "rsys",
        "echo $(id)",
        "ls /",
        "cat /etc/shadow",
        "vi /etc/passwd",
        "less /etc/shadow",
        "more x",
        "pwd",
        "grep x y",
        "test",
        "save x",
        "map -f /tmp/x",
        "sbitmapq x",
        "wr jiffies 0",
        "wr -p 0 0",
        "alias x sys",
        "repeat -1 sys",
        "q",
        "quit",
        "exit",
        "Q",
        "gdb",
        "gdb shell id",
        "g",
        "extend",
        "extend -u",
        "SYS",
        "Bt",
    ],
)
def test_gdb_passthrough_and_refused_words(line: str) -> None:
    err = refused(line)
    assert err.extra["rule"] == "crash.command", (line, err.extra)
    assert "bt" in (err.hint or "")


def test_refusals_keep_their_reasons() -> None:
    assert "gdb" in refused("shell id").message and "writes to memory" in refused("wr jiffies 0").message
    assert "/bin/sh" in refused("echo x").message and "history" in refused("r").message


@pytest.mark.parametrize(
    "line",
    [
        "set scroll on",
        "set scroll off",
        "set scroll less",
        "set console /dev/tty",
        "set silent on",
        "set edit emacs",
        "set namelist /tmp/x",
        "set gdb on",
        "set debug 1",
        "set hash off",
        "set core on",
        "set print_max 100000",
        "set refresh off",
        "set scope sysrq_handle_crash",
        "set offline hide",
        "set redzone on",
        "set zero_excluded on",
        "set null-stop on",
        "set print_array on",
        "set radix 8",
        "set radix 16 10",
        "set 1 2",
        "set prompt x",
        "set var jiffies = 0",
        "set error default",
        "set -a 1",
        "set -c",
        'set "1"',
        "set -x",
        "set radix ten",
    ],
)
def test_set_is_read_only(line: str) -> None:
    assert rule(line) in ("crash.set", "crash.option", "crash.option-value", "crash.quote")


def test_set_names_the_refused_variable() -> None:
    err = refused("set scroll on")
    assert "set scroll" in err.message and "set radix 10|16" in (err.hint or "")


@pytest.mark.parametrize(
    "line,why",
    [
        ("foreach test", "test"),
        ("foreach", "needs one of its commands"),
        ("foreach 1", "needs one"),
        ("foreach bt -p", "does not take -p"),
        ("foreach vm -S", "does not take -S"),
        ("foreach ps -R 1", "does not take -R"),
        ("foreach bt 1", "takes no arguments after it"),
        ("foreach set 1", "no arguments"),
        ("foreach vtop jiffies", "not a hexadecimal value"),
        ("foreach a=b bt", "selector"),
        ("foreach -i /tmp/x bt", "no option -i"),
    ],
)
def test_foreach_checks_its_command(line: str, why: str) -> None:
    err = refused(line)
    assert err.extra["rule"] in ("crash.foreach", "crash.argument", "crash.option"), err.extra
    assert why in err.message, err.message


@pytest.mark.parametrize(
    "line",
    [
        "foreach bt | sh",
        "foreach 'x' gdb",
        "foreach gdb",
        "foreach bt -D dump",
        'foreach "a b" bt -x ; sh',
        "foreach files -R /tmp/x -p",
        "foreach 1 ps -y 1;id",
    ],
)
def test_foreach_attacks(line: str) -> None:
    refused(line)


@pytest.mark.parametrize(
    "line",
    [
        "p jiffies = 0",
        "p jiffies=0",
        "p jiffies += 1",
        "p jiffies -= 1",
        "p jiffies *= 2",
        "p jiffies <<= 1",
        "p jiffies++",
        "p ++jiffies",
        "p jiffies--",
        "p --jiffies",
        "p a===b",
        "p $sp",
        "p $_siginfo",
        "p 'jiffies'",
        'p "x"',
        "p jiffies;sh",
        "p #x",
        "whatis jiffies=1",
        "eval 1=1",
        "rd (jiffies=1)",
        "dis (x++)",
        "search (a=b)",
        "p init_task.comm[0] = 0",
        "p {int}0 = 1",
        "p *(int *)0 = 1",
    ],
)
def test_expressions_only_read(line: str) -> None:
    assert rule(line) in ("crash.expression", "crash.quote", "crash.redirect", "crash.option"), line


def test_long_lines_are_refused() -> None:
    assert rule("p " + "1+" * 600 + "1") == "crash.length"
    assert rule("help " + " ".join(["bt"] * 70)) == "crash.length"
    assert rule("log | grep " + "x" * 5000) == "crash.length"
    pipes.parse("p " + "1+" * 400 + "1")  # under the limits
    pipes.parse("log | grep " + "x" * 3000)


@pytest.mark.parametrize(
    "line,rule_id",
    [
        ("", "crash.empty"),
        ("   ", "crash.empty"),
        ("| grep x", "crash.empty"),
        ("bt 1 zz", "crash.argument"),
        ("bt -c x", "crash.argument"),
        ("bt -c", "crash.option-value"),
        ("rd", "crash.arguments"),
        ("rd jiffies 4 5", "crash.arguments"),
        ("ptob", "crash.arguments"),
        ("struct", "crash.arguments"),
        ("struct task_struct.", "crash.argument"),
        ("struct task_struct..comm", "crash.argument"),
        ("sym -q", "crash.option-value"),
        ("log 1", "crash.arguments"),
        ("tree -t btree x", "crash.argument"),
        ("eval", "crash.arguments"),
        ("eval -b", "crash.arguments"),
        ("help -a", "crash.option"),
        ("ps -y '1'", "crash.quote"),
        ("p -1", "crash.option"),
        ("kmem -l", "crash.option"),
        ("vtop -c", "crash.option-value"),
        ("ascii -x", "crash.argument"),
        ("ascii -- 41", "crash.argument"),  # no getopt in cmd_ascii: words
        ("btop -1", "crash.argument"),
        ("waitq -r x", "crash.argument"),
    ],
)
def test_argument_types_are_checked(line: str, rule_id: str) -> None:
    assert rule(line) == rule_id, refused(line).message


@pytest.mark.parametrize(
    "line,rule_id,why",
    [
        ("log | sh", "crash.pipe", "only grep"),
        ("log | grep", "crash.filter", "one pattern"),
        ("log | tail -n 100001", "crash.tail-limit", "at most 100000"),
        ("log | tail -100001", "crash.tail-limit", ""),
        ("log | head -n x", "crash.filter", "-n N"),
        ("log | wc -c", "crash.filter", ""),
        ("log |", "crash.filter", "empty"),
        ("log || head", "crash.filter", "empty"),
        ("log | grep 'x", "crash.filter", "cannot parse"),
        ("log | grep -P x", "crash.filter", "unsupported"),
        ("log | grep '('", "crash.filter", "regular expression"),
        ("log | xargs sh", "crash.pipe", ""),
        ("log | tee /tmp/x", "crash.pipe", ""),
        ("log | grep x | sh", "crash.pipe", ""),
    ],
)
def test_filters_are_the_agents_own(line: str, rule_id: str, why: str) -> None:
    err = refused(line)
    assert err.extra["rule"] == rule_id and why in err.message, err.message


def test_filter_chains() -> None:
    command, filters = pipes.parse("log | tail -n 100000 | grep -c x")
    assert command == "log" and pipes.describe(filters) == ["tail", "grep"]
    chain = pipes.Chain(pipes.parse("log | grep -i 'A b' | head -n 2")[1])
    out = [line for text in ("a b 1\n", "x\n", "A B 2\n", "a b 3\n") for line in chain.feed(text)]
    assert out == ["a b 1\n", "A B 2\n"] and chain.done


def test_lines_are_cut_as_they_stream() -> None:
    lines = pipes.Lines()
    out = lines.feed(b"short\n" + b"x" * 3000)
    out += lines.feed(b"y" * 3000)
    assert len(lines.held) == pipes.LINE_MAX  # no more held than one line's worth
    out += lines.feed(b"z" * 5000 + b"\nlast")
    out += lines.end()
    assert out[0] == "short\n" and out[2] == "last\n" and len(out) == 3
    long = out[1]
    assert long.startswith("x" * 3000 + "y" * 1096) and re.search(r"\[\.\.\. 6904 more bytes", long)
    assert lines.end() == []


def test_tail_keeps_at_most_its_lines() -> None:
    chain = pipes.Chain(pipes.parse("log | tail -n 3")[1])
    for n in range(10):
        chain.feed("%d\n" % n)
    assert chain.end() == ["7\n", "8\n", "9\n"]


# crash 8.0.2's getopt strings (git show 8.0.2:<file>, `getopt(argcnt, args, ...)`): what the
# agent allows must be options crash has, so each is parsed the way crash parses it.
CRASH_GETOPT = {
    "bt": "D:fFI:S:c:n:aAloreEgstTdxR:Ovp",
    "log": "Ttdmas",
    "sys": "ctip:",
    "ps": "ASgstcpkuGlmarC:y:",
    "task": "xdhR:",
    "files": "d:R:p:c",
    "vm": "f:pmvR:P:xdM:",
    "kmem": "gI:sS::rFfm:pvczCinl:L:PVoh",
    "struct": "pxdhfuc:rvol:",
    "union": "pxdhfuc:rvol:",
    "*": "pxdhfuc:rvol:",
    "p": "dhxu",
    "whatis": "om:r:",
    "sym": "lLQ:q:npsMm:",
    "dis": "dxhulsrfUb:B:",
    "rd": "Raxme:r:pfudDusSNo:81:3:6:",
    "mod": "Rd:Ds:Sot",
    "net": "N:asSR:xdn",
    "dev": "dDpiVv:",
    "irq": "dbuasc:",
    "runq": "dtTgmc:",
    "timer": "rC:",
    "mount": "ifn:",
    "sig": "lR:s:g",
    "tree": "xdt:r:o:s:S:plN",
    "list": "BHhrs:S:e:o:O:xdl:",
    "search": "Ttl:ukKVps:e:v:m:hwcx:",
    "foreach": "R:vomlgersStTpukcfFxhdaGy:",
    "set": "pvc:a:",
    "ipcs": "smMqn:",
    "vtop": "ukc:",
    "mach": "cmxd",
    "bpf": "PMtTjsxdm:p:",
    "help": "efNDdmM:ngcaBbHhkKsvVoptTzLOr",
    "fuser": "",
    "swap": "",
    "pte": "",
    "ptov": "",
}


@pytest.mark.parametrize("name", sorted(g.COMMANDS))
def test_allowed_options_are_crashs_own(name: str) -> None:
    spec = g.COMMANDS[name]
    crash = CRASH_GETOPT.get(name, "")
    letters = re.sub(r"[^A-Za-z0-9]", "", crash)
    takes_value = set(re.findall(r"([A-Za-z0-9]):(?!:)", crash))
    attached = set(re.findall(r"([A-Za-z0-9])::", crash))
    assert set(spec.flags) <= set(letters) - takes_value - attached, name
    assert set(spec.values) <= takes_value, name
    assert set(spec.attached) <= attached, name
    assert not set(spec.refused) & (set(spec.flags) | set(spec.values)), name
