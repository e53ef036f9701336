"""The drgn the Ansible role and bootstrap install is the one the agent names in its hints."""

from __future__ import annotations

from pathlib import Path

import yaml

from crashfleet.agent import domains
from crashfleet.agent.dumps import drgn_pick
from crashfleet.controller.bootstrap import Plan

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "crashfleet_agent"


def test_role_bootstrap_and_agent_pin_the_same_drgn() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["crashfleet_drgn_version"] == drgn_pick.PINNED
    assert defaults["crashfleet_drgn_venv"] == drgn_pick.VENV
    assert Plan.__dataclass_fields__["drgn_version"].default == drgn_pick.PINNED
    assert drgn_pick.version_key(drgn_pick.PINNED) >= drgn_pick.version_key(drgn_pick.MIN_VERSION)
    assert f"drgn=={drgn_pick.PINNED}" in drgn_pick.INSTALL_HINT and drgn_pick.VENV in drgn_pick.INSTALL_HINT
    packages = domains.packages("Debian")  # what the role installs (agent.pyz packages)
    assert "python3-drgn" not in packages and "python3-venv" in packages


def test_versions_order_as_drgn_releases_do() -> None:
    assert drgn_pick.version_key("0.0.22") < drgn_pick.version_key("0.0.30") < drgn_pick.version_key("0.3.0")
    assert drgn_pick.version_key("0.0.32+70.gb1cf7b67") == (0, 0, 32)
    assert not drgn_pick.recent("0.0.22") and drgn_pick.recent("0.3.0") and not drgn_pick.recent(None)
