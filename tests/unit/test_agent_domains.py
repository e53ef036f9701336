"""Agent domains declare themselves (agent/domains/): found by discovery, loaded one at a time."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from crashfleet.agent import domains, facts, policy
from crashfleet.controller.bundle import write_bundle

LAZY = """
import json, sys, tempfile
from crashfleet.agent import domains
from crashfleet.agent.service import Agent
agent = Agent(tempfile.mkdtemp(), None, None, None)
loaded = lambda: sorted(m for m in ("bpftrace", "capture", "dumps.service") if "crashfleet.agent." + m in sys.modules)
before = loaded()
served = sorted(agent.domain_methods("bpftrace.info"))
print(json.dumps({"before": before, "after": loaded(), "served": served, "none": agent.domain_methods("nosuch.x")}))
"""


def test_each_domain_declares_its_policy_tools_and_packages() -> None:
    names = [d.name for d in domains.declared()]
    assert names == sorted(names) and {"bpftrace", "capture", "dumps"} <= set(names)
    assert set(policy.DEFAULTS) == set(policy.CORE) | set(domains.policy_defaults())
    assert {"bpftrace_max_duration", "max_captures", "dump_dirs"} <= set(domains.policy_defaults())
    assert {"bpftrace", "tcpdump", "crash", "drgn"} <= set(facts.TOOLS)
    assert {"bpftrace", "tcpdump", "crash"} <= set(domains.packages("Debian"))
    assert domains.packages("Plan9") == []


def test_a_method_loads_only_its_domain() -> None:
    out = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, check=True, timeout=60)
    got = json.loads(out.stdout)
    assert got["before"] == [], "importing the service must not import any domain"
    assert got["after"] == ["bpftrace"], got
    assert "bpftrace.info" in got["served"] and all(m.startswith("bpftrace.") for m in got["served"])
    assert got["none"] == {}


def test_a_domain_serving_outside_its_prefix_is_refused() -> None:
    stray = domains.Domain(name="toy", code="tests.unit.test_agent_domains")
    with pytest.raises(ValueError, match="outside its prefix: other.x"):
        domains.load(stray, None)


def methods(agent: object) -> dict[str, object]:  # the toy domain's code (above)
    return {"toy.ok": print, "other.x": print}


def test_the_agent_prints_the_packages_the_role_installs(capsys: pytest.CaptureFixture[str]) -> None:
    from crashfleet.agent.main import main

    assert main(["packages", "--family", "Debian"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[:2] == ["python3", "sudo"] and set(domains.packages("Debian")) <= set(printed)


def test_the_server_does_not_import_the_agents_domains() -> None:
    code = (
        "import sys, crashfleet.controller.server; print(sorted(m for m in sys.modules if m.startswith("
        "('pexpect', 'crashfleet.agent.dumps', 'crashfleet.agent.bpftrace', 'crashfleet.agent.capture'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


IN_ZIPAPP = """
import json, pkgutil, sys
sys.path.insert(0, sys.argv[1])
from crashfleet.agent import domains, main  # noqa: F401 - what an agent imports at start
started_with_inspect = "inspect" in sys.modules
listed = domains.module_names()
print(json.dumps({"zip": domains.__file__.startswith(sys.argv[1]), "inspect": started_with_inspect,
                  "listed": listed, "pkgutil": sorted(m.name for m in pkgutil.iter_modules(domains.__path__))}))
"""


def test_domains_are_listed_as_pkgutil_lists_them_in_the_tree_and_in_the_zipapp(tmp_path: Path) -> None:
    assert domains.module_names() == sorted(m.name for m in pkgutil.iter_modules(domains.__path__))
    pyz = tmp_path / "agent.pyz"
    write_bundle(pyz)
    out = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", IN_ZIPAPP, str(pyz)], capture_output=True, text=True, check=True, timeout=60
    )
    got = json.loads(out.stdout)
    assert got["zip"] and got["listed"] == got["pkgutil"] and "dumps" in got["listed"], got
    assert not got["inspect"], "an agent start imports inspect again (pkgutil.iter_modules)"
