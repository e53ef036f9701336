"""Tests for crashfleet.inventory, with pattern and vars semantics checked against real Ansible."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from crashfleet.inventory import (
    Group,
    Host,
    Inventory,
    InventoryError,
    PatternError,
    default_inventory,
    load_inventory,
)

ANSIBLE_ENV = {
    **os.environ,
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_LOCALHOST_WARNING": "False",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
}
MAGIC = {"inventory_file", "inventory_dir", "inventory_hostname", "inventory_hostname_short", "group_names"}


def ansible_tool(name: str) -> str:
    """The venv's Ansible command (beside this Python), else the one on PATH."""
    sibling = Path(sys.executable).parent / name
    found = str(sibling) if sibling.exists() else shutil.which(name)
    assert found, f"{name} is not installed; install ansible-core"
    return found


def write(directory: Path, name: str, text: str, executable: bool = False) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    if executable:
        path.chmod(0o755)
    return path


def names(hosts: list[Host]) -> list[str]:
    return [h.name for h in hosts]


# --------------------------------------------------------------------------- YAML


def test_yaml_groups_children_hosts_and_vars(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.yml",
            """
        all:
          vars: {site: lab}
          hosts:
            solo:
          children:
            prod:
              children:
                web:
                  hosts:
                    web01: {ansible_host: 10.0.0.1}
                    web02:
                db:
                  hosts:
                    db01:
                  vars: {role: db}
        """,
        )
    )
    assert inv.source == str(tmp_path / "hosts.yml")
    assert list(inv.hosts) == ["solo", "web01", "web02", "db01"]
    assert list(inv.groups) == ["all", "ungrouped", "prod", "web", "db"]
    assert inv.groups["prod"] == Group("prod", [], ["web", "db"], {})
    assert inv.groups["web"].hosts == ["web01", "web02"]
    assert inv.groups["all"].children == ["ungrouped", "prod"]
    assert inv.groups["ungrouped"].hosts == ["solo"]
    assert inv.hosts["web01"].groups == ("all", "prod", "web")
    assert inv.hosts["web01"].vars["ansible_host"] == "10.0.0.1"
    assert inv.hosts["db01"].vars["role"] == "db"
    assert inv.hosts["db01"].vars["site"] == "lab"
    assert inv.group_names() == ["all", "db", "prod", "ungrouped", "web"]


def test_yaml_top_level_groups_without_all_and_string_sections(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.yaml",
            """
        web:
          hosts: web01
        db:
          hosts:
            db01:
          children: web
        """,
        )
    )
    assert inv.groups["all"].children == ["ungrouped", "db"]
    assert inv.groups["db"].children == ["web"]
    assert inv.groups["web"].hosts == ["web01"]
    assert inv.hosts["web01"].groups == ("all", "db", "web")


def test_json_and_extensionless_yaml_are_read_as_yaml(tmp_path: Path) -> None:
    data = {"all": {"children": {"web": {"hosts": {"w1": {"ansible_port": 2201}}}}}}
    json_inv = load_inventory(write(tmp_path, "hosts.json", json.dumps(data)))
    plain_inv = load_inventory(write(tmp_path, "hosts", "web:\n  hosts:\n    w1: {ansible_port: 2201}\n"))
    for inv in (json_inv, plain_inv):
        assert inv.groups["web"].hosts == ["w1"]
        assert inv.hosts["w1"].port == 2201


def test_yaml_host_key_must_be_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yml", "web:\n  hosts:\n    1234:\n")
    with pytest.raises(InventoryError, match=r"hosts\.yml: .*host 1234 must be a string"):
        load_inventory(path)


# --------------------------------------------------------------------------- INI


def test_ini_sections_children_vars_and_ungrouped(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.ini",
            """
        # comment
        bastion ansible_host=10.0.0.1
        ; another comment

        [prod:children]
        web
        db

        [web]
        web01 ansible_user=deploy
        bastion

        [db]
        db01:2222

        [web:vars]
        http_port = 8080
        """,
        )
    )
    assert list(inv.hosts) == ["bastion", "web01", "db01"]
    assert inv.groups["ungrouped"].hosts == []  # bastion joined web, so it left ungrouped
    assert inv.groups["prod"].children == ["web", "db"]
    assert inv.groups["web"].vars == {"http_port": 8080}
    assert inv.hosts["bastion"].groups == ("all", "prod", "web")
    assert inv.hosts["web01"].user == "deploy"
    assert inv.hosts["db01"].port == 2222
    assert inv.hosts["db01"].vars["ansible_port"] == 2222


def test_ini_values_are_parsed_like_ansible(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts",
            """
        h1 a=1 b="2" c='x y' d=yes e=True f=[1,2] g=0755 h=1.5 i="{'k': 1}" j=x#y k=z # comment

        [g]
        h1

        [g:vars]
        v1 = "quoted" # comment
        v2 = plain # comment
        v3 =
        """,
        )
    )
    h1 = inv.hosts["h1"].vars
    expected = {
        "a": 1,
        "b": 2,
        "c": "x y",
        "d": "yes",
        "e": True,
        "f": [1, 2],
        "g": "0755",
        "h": 1.5,
        "i": {"k": 1},
        "j": "x",
        "v1": "quoted",
        "v2": "plain # comment",
        "v3": "",
    }
    assert {k: h1[k] for k in expected} == expected
    assert "k" not in h1


def test_ini_child_group_may_be_declared_later(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.ini",
            """
        [dc:children]
        late

        [late]
        l1
        """,
        )
    )
    assert inv.groups["dc"].children == ["late"]
    assert inv.hosts["l1"].groups == ("all", "dc", "late")


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        ("web[01:03]", ["web01", "web02", "web03"]),
        ("web[8:10]", ["web8", "web9", "web10"]),
        ("web[1:10:4]", ["web1", "web5", "web9"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("r[1:2]-n[a:b].lan", ["r1-na.lan", "r1-nb.lan", "r2-na.lan", "r2-nb.lan"]),
        ("10.0.0.[1:2]", ["10.0.0.1", "10.0.0.2"]),
    ],
)
def test_host_ranges_in_ini_and_yaml(tmp_path: Path, definition: str, expected: list[str]) -> None:
    ini = load_inventory(write(tmp_path, "hosts.ini", f"[g]\n{definition} x=1\n"))
    yml = load_inventory(write(tmp_path, "hosts.yml", f"g:\n  hosts:\n    '{definition}': {{x: 1}}\n"))
    for inv in (ini, yml):
        assert inv.groups["g"].hosts == expected
        assert all(h.vars["x"] == 1 for h in inv.hosts.values())


def test_host_range_with_port(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", "[g]\nweb[1:2]:2200\n"))
    assert [(h.name, h.port) for h in inv.hosts.values()] == [("web1", 2200), ("web2", 2200)]


def test_zero_padded_range_needs_equal_widths(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[g]\nweb[01:100]\n")
    with pytest.raises(InventoryError, match=r"hosts\.ini:2: .*equal-length"):
        load_inventory(path)


# --------------------------------------------------------------------------- directories


def test_directory_merges_files_and_skips_ansible_ignored_ones(tmp_path: Path) -> None:
    inv_dir = tmp_path / "inv"
    write(inv_dir, "01-web.ini", "[web]\nweb01\n")
    write(inv_dir, "02-db.yml", "db:\n  hosts:\n    db01:\n  children:\n    web:\n")
    write(inv_dir, "sub/03-cache", "[cache]\ncache01\n")
    for ignored in ("old.bak", "hosts~", "x.orig", "ansible.cfg", "site.retry", ".hidden", "README.md", "notes.txt"):
        write(inv_dir, ignored, "[junk]\njunk01\n")
    write(inv_dir, "group_vars/web.yml", "role: web\n")
    write(inv_dir, "host_vars/db01.yml", "role: primary\n")
    inv = load_inventory(inv_dir)
    assert list(inv.hosts) == ["web01", "db01", "cache01"]
    assert "junk" not in inv.groups
    assert inv.groups["db"].children == ["web"]
    assert inv.hosts["web01"].vars["role"] == "web"
    assert inv.hosts["db01"].vars["role"] == "primary"


def test_directory_without_inventory_files_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "inv/group_vars/all.yml", "x: 1\n")
    write(tmp_path, "inv/notes.txt", "not an inventory\n")
    with pytest.raises(InventoryError, match=r"inv: inventory directory holds no inventory files"):
        load_inventory(tmp_path / "inv")


# --------------------------------------------------------------------------- variable precedence


def test_inline_precedence_all_parents_children_priority_host(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.yml",
            """
        all:
          vars: {v: all, a: all}
          children:
            prod:
              vars: {v: prod, p: prod}
              children:
                web:
                  vars: {v: web}
                  hosts:
                    web01: {h: host}
                    web02: {v: host}
            zeta:
              vars: {z: zeta}
              hosts: {web01: }
            alpha:
              vars: {z: alpha, ansible_group_priority: 10}
              hosts: {web01: }
        """,
        )
    )
    v = inv.hosts["web01"].vars
    assert (v["v"], v["a"], v["p"], v["h"]) == ("web", "all", "prod", "host")
    assert v["z"] == "alpha"  # same depth: higher ansible_group_priority wins over name order
    assert "ansible_group_priority" not in v
    assert inv.hosts["web02"].vars["v"] == "host"
    assert inv.hosts["web01"].groups == ("all", "prod", "zeta", "alpha", "web")
    assert inv.hosts["web01"].vars["group_names"] == ["alpha", "prod", "web", "zeta"]
    assert inv.hosts["web01"].vars["inventory_hostname"] == "web01"


def test_group_vars_and_host_vars_file_forms(tmp_path: Path) -> None:
    write(tmp_path, "hosts.ini", "[web]\nweb01 h=inline\nweb02\n[db]\ndb01\n")
    write(tmp_path, "group_vars/all", "a: bare-file\n")
    write(tmp_path, "group_vars/web/10-first.yml", "w: first\nw2: first\n")
    write(tmp_path, "group_vars/web/20-second.yaml", "w: second\n")
    write(tmp_path, "group_vars/web/notes.txt", "w: ignored\n")
    write(tmp_path, "group_vars/db.json", '{"d": "json"}')
    write(tmp_path, "group_vars/db.yml", "d: shadowed-by-extensionless-order\n")
    write(tmp_path, "host_vars/web01.yml", "h: file\n")
    inv = load_inventory(tmp_path / "hosts.ini")
    web01, db01 = inv.hosts["web01"].vars, inv.hosts["db01"].vars
    assert (web01["a"], web01["w"], web01["w2"], web01["h"]) == ("bare-file", "second", "first", "file")
    assert db01["d"] == "shadowed-by-extensionless-order"  # NAME.yml is tried before NAME.json
    assert inv.groups["web"].vars == {"w": "second", "w2": "first"}


def test_group_vars_file_for_all_beats_inline_child_group_vars(tmp_path: Path) -> None:
    """Ansible's default order: every inline group var ranks below group_vars/ files."""
    write(tmp_path, "hosts.yml", "web:\n  vars: {x: inline-web}\n  hosts:\n    web01:\n")
    write(tmp_path, "group_vars/all.yml", "x: file-all\n")
    assert load_inventory(tmp_path / "hosts.yml").hosts["web01"].vars["x"] == "file-all"


VARS_INVENTORY = """
    all:
      vars: {v_all: inline_all, v_x: inline_all, v_y: inline_all, ansible_user: root}
      hosts:
        solo: {ansible_port: "2222"}
      children:
        prod:
          vars: {v_x: inline_prod, v_p: inline_prod}
          children:
            web:
              vars: {v_x: inline_web, v_w: inline_web, v_q: inline_web}
              hosts:
                web01: {v_h: inline_host, v_w: inline_host}
                web02:
            db:
              vars: {ansible_group_priority: 5, v_x: inline_db, v_d: inline_db}
              hosts:
                web02:
                db01: {v_p: inline_host}
        edge:
          vars: {v_d: inline_edge, v_x: inline_edge, v_z: inline_edge}
          hosts:
            db01:
"""


def test_vars_match_ansible_inventory(tmp_path: Path) -> None:
    write(tmp_path, "hosts.yml", VARS_INVENTORY)
    write(tmp_path, "group_vars/all.yml", "v_y: file_all\nv_z: file_all\n")
    write(tmp_path, "group_vars/prod/a.yml", "v_p: file_prod_a\nv_q: file_prod_a\n")
    write(tmp_path, "group_vars/prod/b.yaml", "v_q: file_prod_b\n")
    write(tmp_path, "group_vars/edge", "v_e: file_edge\n")
    write(tmp_path, "host_vars/web01", "v_h: file_host\n")
    inv = load_inventory(tmp_path / "hosts.yml")
    listing = subprocess.run(
        [ansible_tool("ansible-inventory"), "-i", str(tmp_path / "hosts.yml"), "--list"],
        capture_output=True,
        text=True,
        env=ANSIBLE_ENV,
        check=True,
        timeout=60,
    )
    expected = json.loads(listing.stdout)["_meta"]["hostvars"]
    ours = {h.name: {k: v for k, v in h.vars.items() if k not in MAGIC} for h in inv.hosts.values()}
    assert ours == expected
    assert ours["web02"]["v_x"] == "inline_db"  # sanity anchors on top of the cross-check
    assert ours["db01"]["v_z"] == "file_all"


# --------------------------------------------------------------------------- cycles and errors


def test_group_cycle_is_rejected_in_ini(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[a]\nh1\n[b]\nh2\n[a:children]\nb\n[b:children]\na\n")
    with pytest.raises(InventoryError, match=r"hosts\.ini:8: .*cycle"):
        load_inventory(path)


def test_group_that_is_its_own_child_is_rejected_in_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yml", "web:\n  children:\n    web:\n")
    with pytest.raises(InventoryError, match=r"hosts\.yml: group 'web' as a child of 'web' makes a cycle"):
        load_inventory(path)


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yml", "all:\n  hosts:\n    web01:\n   bad: [\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert caught.value.path == str(path)
    assert caught.value.line == 4
    assert str(caught.value).startswith(f"{path}:4: invalid YAML")


def test_bad_ini_line_names_file_line_and_text(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[web]\nweb01\nweb02 novalue\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert str(caught.value) == f"{path}:3: expected key=value host variable, got 'novalue' in 'web02 novalue'"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("[web]\nw1\n[bad section]\n", 3, "invalid section header '[bad section]'"),
        ("[web:hosts2]\n", 1, "unknown type 'hosts2'"),
        ("[web:vars]\nno_equals_here\n", 2, "expected key=value, got 'no_equals_here'"),
        ("[web]\nw1\n[all:children]\nweb\nnosuch\n", 5, "undefined group 'nosuch'"),
        ("[web]\nw1 x='unclosed\n", 2, "cannot parse host line"),
    ],
)
def test_ini_errors(tmp_path: Path, text: str, line: int, needle: str) -> None:
    path = write(tmp_path, "hosts.ini", text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert needle in str(caught.value)


def test_extensionless_file_that_is_neither_ini_nor_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "all:\n  hosts: [\n")
    with pytest.raises(InventoryError, match=r"hosts:1: .*nor is it YAML: line 3"):
        load_inventory(path)


def test_missing_path_says_missing(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"nope\.ini: inventory is missing"):
        load_inventory(tmp_path / "nope.ini")


def test_vars_file_must_be_a_mapping(tmp_path: Path) -> None:
    write(tmp_path, "hosts.ini", "[web]\nw1\n")
    bad = write(tmp_path, "group_vars/web.yml", "- a\n- b\n")
    with pytest.raises(InventoryError, match=re.escape(f"{bad}: vars file must hold a mapping")):
        load_inventory(tmp_path / "hosts.ini")


# --------------------------------------------------------------------------- default inventory


@pytest.mark.parametrize("make", [default_inventory, lambda: load_inventory(None)])
def test_default_inventory_is_local_localhost(make: Any) -> None:
    inv: Inventory = make()
    assert inv.source is None
    assert list(inv.hosts) == ["localhost"]
    assert inv.groups["ungrouped"].hosts == ["localhost"]
    host = inv.hosts["localhost"]
    assert host.groups == ("all", "ungrouped")
    assert host.connection == "local"
    assert names(inv.match("all")) == ["localhost"]


# --------------------------------------------------------------------------- Host properties


def host(**host_vars: Any) -> Host:
    return Host("web01.example.com", host_vars, ("all",))


@pytest.mark.parametrize(
    ("prop", "host_vars", "expected"),
    [
        ("address", {}, "web01.example.com"),
        ("address", {"ansible_host": "10.1.2.3"}, "10.1.2.3"),
        ("address", {"ansible_host": "10.1.2.3", "ansible_ssh_host": "10.9.9.9"}, "10.9.9.9"),
        ("port", {}, None),
        ("port", {"ansible_port": "2222"}, 2222),
        ("port", {"ansible_port": 22}, 22),
        ("user", {}, None),
        ("user", {"ansible_user": "deploy"}, "deploy"),
        ("key_file", {}, None),
        ("key_file", {"ansible_ssh_private_key_file": "~/.ssh/id_fleet"}, os.path.expanduser("~/.ssh/id_fleet")),
        ("python", {}, "python3"),
        ("python", {"ansible_python_interpreter": "auto_legacy_silent"}, "python3"),
        ("python", {"ansible_python_interpreter": "auto"}, "python3"),
        ("python", {"ansible_python_interpreter": "/usr/bin/python3.12"}, "/usr/bin/python3.12"),
        ("become", {}, False),
        ("become", {"ansible_become": True}, True),
        ("become", {"ansible_become": "Yes"}, True),
        ("become", {"ansible_become": "on"}, True),
        ("become", {"ansible_become": "1"}, True),
        ("become", {"ansible_become": "FALSE"}, False),
        ("become", {"ansible_become": "off"}, False),
        ("become", {"ansible_become": 0}, False),
        ("connection", {}, "ssh"),
        ("connection", {"ansible_connection": "local"}, "local"),
        ("connection", {"ansible_connection": "ansible.builtin.local"}, "local"),
        ("connection", {"ansible_connection": "smart"}, "ssh"),
        ("agent_dir", {}, "~/.cache/crashfleet"),
        ("agent_dir", {"crashfleet_agent_dir": "/opt/cf"}, "/opt/cf"),
    ],
)
def test_host_properties(prop: str, host_vars: dict[str, Any], expected: Any) -> None:
    assert getattr(host(**host_vars), prop) == expected


@pytest.mark.parametrize(
    ("prop", "host_vars", "needle"),
    [
        ("port", {"ansible_port": "ssh"}, "bad ansible_port"),
        ("port", {"ansible_port": 70000}, "bad ansible_port: 70000 is outside 1-65535"),
        ("become", {"ansible_become": "maybe"}, "bad ansible_become"),
    ],
)
def test_host_property_errors_name_the_host(prop: str, host_vars: dict[str, Any], needle: str) -> None:
    with pytest.raises(InventoryError, match=f"host 'web01.example.com': {needle}"):
        getattr(host(**host_vars), prop)


def test_host_properties_from_ini_strings(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.ini",
            """
        db1 ansible_host=10.0.0.5 ansible_port=2200 ansible_user=ops ansible_become=yes ansible_python_interpreter=auto
        """,
        )
    )
    db1 = inv.hosts["db1"]
    assert (db1.address, db1.port, db1.user, db1.become, db1.python) == ("10.0.0.5", 2200, "ops", True, "python3")


# --------------------------------------------------------------------------- patterns


PATTERN_INVENTORY = """
    bastion ansible_host=10.0.0.1
    jump.example.com

    [web]
    web[01:04].example.com

    [db]
    db-[a:c]
    web03.example.com

    [cache]
    192.0.2.10
    192.0.2.11
    2001:db8::5

    [prod:children]
    web
    db

    [staging]
    stage[1:2]

    [dc1:children]
    prod
    cache
"""

CROSS_CHECKED_PATTERNS = [
    "all",
    "*",
    "al*",
    "web",
    "db-a",
    "web:db",
    "db , web",
    "web:&db",
    "prod:!db",
    "web:!web03.example.com",
    "web*",
    "*.example.com",
    "192.0.*",
    "~web0[1-3]",
    "~example",
    "web[0]",
    "web[1:2]",
    "web[-1]",
    "web[2:]",
    "dc1[3:5]",
    "web[0],db[-1]",
    "ungrouped",
    "stage?",
    "!web",
    "&prod",
    "all:!prod:!ungrouped",
    "2001:db8::5",
    "localhost",
    "web:nosuch",
    "cache[1]:&prod",
    "web[9]",
]


def ansible_list_hosts(inventory: Path, pattern: str) -> list[str]:
    done = subprocess.run(
        [ansible_tool("ansible"), "-i", str(inventory), pattern, "--list-hosts"],
        capture_output=True,
        text=True,
        env=ANSIBLE_ENV,
        check=True,
        timeout=60,
    )
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if re.fullmatch(r"\s*hosts \(\d+\):", line))
    count = int(re.search(r"\d+", lines[header]).group())  # type: ignore[union-attr]
    listed = [line.strip() for line in lines[header + 1 :] if line.strip()]
    assert len(listed) == count, done.stdout
    return listed


@pytest.fixture(scope="module")
def pattern_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("patterns"), "hosts.ini", PATTERN_INVENTORY)


@pytest.fixture(scope="module")
def ansible_answers(pattern_inventory: Path) -> dict[str, list[str]]:
    """What real Ansible lists for every cross-checked pattern (run concurrently)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda p: ansible_list_hosts(pattern_inventory, p), CROSS_CHECKED_PATTERNS)
        return dict(zip(CROSS_CHECKED_PATTERNS, results))


@pytest.mark.parametrize("pattern", CROSS_CHECKED_PATTERNS)
def test_pattern_matches_real_ansible(
    pattern_inventory: Path, ansible_answers: dict[str, list[str]], pattern: str
) -> None:
    inv = load_inventory(pattern_inventory)
    expected = ansible_answers[pattern]
    if not expected:
        with pytest.raises(PatternError):
            inv.match(pattern)
    else:
        assert names(inv.match(pattern)) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web[1:2]", ["web02.example.com", "web03.example.com"]),  # inclusive end
        (
            "db:web",
            [
                "db-a",
                "db-b",
                "db-c",
                "web03.example.com",
                "web01.example.com",
                "web02.example.com",
                "web04.example.com",
            ],
        ),  # term order, not inventory order
        ("web:&db", ["web03.example.com"]),
        ("~db", ["db-a", "db-b", "db-c", "web03.example.com"]),  # regex also matches group 'db'
        ("~db-", ["db-a", "db-b", "db-c"]),
        ("stage?:bastion", ["stage1", "stage2", "bastion"]),
        ("2001:db8::5", ["2001:db8::5"]),  # one IPv6 term, not three
    ],
)
def test_pattern_semantics_explicitly(pattern_inventory: Path, pattern: str, expected: list[str]) -> None:
    assert names(load_inventory(pattern_inventory).match(pattern)) == expected


def test_implicit_localhost_is_local_and_in_no_group(pattern_inventory: Path) -> None:
    [local] = load_inventory(pattern_inventory).match("localhost")
    assert (local.name, local.connection, local.groups) == ("localhost", "local", ())


def test_pattern_that_matches_nothing_lists_groups(pattern_inventory: Path) -> None:
    with pytest.raises(PatternError) as caught:
        load_inventory(pattern_inventory).match("wbe")
    message = str(caught.value)
    assert message.startswith("pattern 'wbe' matches no host (nothing matched 'wbe'); ")
    assert "groups: all, cache, db, dc1, prod, staging, ungrouped, web" in message
    assert "host names such as bastion, jump.example.com, web01.example.com..." in message


@pytest.mark.parametrize(
    ("pattern", "needle"),
    [
        ("", "empty host pattern"),
        ("  , ", "empty host pattern"),
        ("~web(", "invalid host pattern"),
        ("web[4]", "out of range"),
        ("web:!web", "matches no host"),
        ("web:!", "'!' must be followed"),
    ],
)
def test_bad_patterns(pattern_inventory: Path, pattern: str, needle: str) -> None:
    with pytest.raises(PatternError, match=re.escape(needle)):
        load_inventory(pattern_inventory).match(pattern)


# --------------------------------------------------------------------------- dynamic sources


def test_executable_script_is_read_through_ansible_inventory(tmp_path: Path) -> None:
    listing = {
        "web": {"hosts": ["w1", "w2"], "vars": {"role": "web"}},
        "prod": {"children": ["web"]},
        "_meta": {"hostvars": {"w1": {"ansible_port": 2201}}},
    }
    script = write(tmp_path, "fleet.sh", f"#!/bin/sh\necho '{json.dumps(listing)}'\n", executable=True)
    inv = load_inventory(script)
    assert list(inv.hosts) == ["w1", "w2"]
    assert inv.groups["prod"].children == ["web"]
    assert inv.hosts["w1"].port == 2201
    assert inv.hosts["w2"].vars["role"] == "web"
    assert inv.hosts["w2"].groups == ("all", "prod", "web")
    assert names(inv.match("prod:!w1")) == ["w2"]


def test_plugin_config_is_read_through_ansible_inventory(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "fleet.yml",
        """
        plugin: ansible.builtin.generator
        hosts:
          name: "{{ app }}-{{ env }}"
          parents:
            - name: "{{ env }}"
              vars: {tier: "{{ env }}"}
        layers:
          app: [web, db]
          env: [dev, prod]
        """,
    )
    inv = load_inventory(config)
    assert inv.groups["prod"].hosts == ["web-prod", "db-prod"]
    assert inv.hosts["db-dev"].vars["tier"] == "dev"


def test_failing_script_reports_stderr_tail(tmp_path: Path) -> None:
    script = write(tmp_path, "broken.sh", "#!/bin/sh\necho 'cloud API said no' >&2\nexit 3\n", executable=True)
    with pytest.raises(
        InventoryError, match=r"(?s)broken\.sh: ansible-inventory failed \(exit 1\): .*\ncloud API said no\n"
    ):
        load_inventory(script)


def test_dynamic_source_without_ansible_asks_for_ansible_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = write(tmp_path, "fleet.sh", "#!/bin/sh\necho '{}'\n", executable=True)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(InventoryError, match=r"fleet\.sh: .*install ansible-core"):
        load_inventory(script)


def test_executable_file_without_shebang_is_still_static(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "hosts.yml", "web:\n  hosts:\n    w1:\n", executable=True)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert load_inventory(path).groups["web"].hosts == ["w1"]
