"""What `pip install crashfleet` and `uvx crashfleet serve` give a user: the sdist and wheel built
from the committed tree, the wheel installed into a fresh venv, started from outside the source
tree and driven by the MCP SDK's client."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters, stdio_client

from tests.e2e.conftest import TOOLS, structured
from tests.packaging.dists import BIN, build, install, missing_from_wheel, missing_from_zipapp, run, uv_env

pytestmark = pytest.mark.timeout(900)
START = 120.0  # a server's start and its calls (uvx first assembles its environment from the cache)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def installed(dists: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `crashfleet` command of a fresh venv holding only the wheel and its dependencies."""
    return install(dists[1], tmp_path_factory.mktemp("venv") / "venv")


IMPORT_ALL = """
import importlib, pathlib, sys, crashfleet
failed = []
for tree in ("controller", "agent", "inventory"):
    root = pathlib.Path(importlib.import_module("crashfleet." + tree).__file__).parent
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if "scripts" in parts or parts[-1] == "__main__":
            continue  # drgn scripts run inside drgn; __main__ runs the program
        name = ".".join(("crashfleet", *parts)).removesuffix(".__init__")
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed.append("%s: %s" % (name, exc))
print("\\n".join(failed))
"""


def import_failures(crashfleet: Path, cwd: Path) -> list[str]:
    """Every module of the installed package imported in its own venv, from outside the tree."""
    out = run([str(crashfleet.parent / "python"), "-I", "-c", IMPORT_ALL], cwd=cwd)
    return [line for line in out.splitlines() if line.strip()]


def test_the_wheel_ships_every_file_of_the_tree(dists: tuple[Path, Path]) -> None:
    sdist, wheel = dists
    assert missing_from_wheel(wheel) == []
    assert sdist.stat().st_size > 0


def test_every_installed_module_imports(installed: Path, tmp_path: Path) -> None:
    assert import_failures(installed, tmp_path) == []


def test_a_wheel_missing_a_package_is_named(dists: tuple[Path, Path], tmp_path: Path) -> None:
    """The failure this test exists for: a package left out of the wheel (as the hand-kept list did)."""
    broken = tmp_path / dists[1].name
    with zipfile.ZipFile(dists[1]) as good, zipfile.ZipFile(broken, "w") as bad:
        for item in good.infolist():
            if not item.filename.startswith("crashfleet/agent/domains/"):
                bad.writestr(item, good.read(item))
    missing = missing_from_wheel(broken)
    assert "crashfleet.agent.domains (agent/domains/__init__.py)" in missing, missing
    failures = import_failures(install(broken, tmp_path / "venv"), tmp_path)
    assert any("No module named 'crashfleet.agent.domains'" in line for line in failures), failures


def test_the_installed_agent_zipapp_carries_every_agent_file(installed: Path, tmp_path: Path) -> None:
    zipapp = tmp_path / "agent.pyz"
    run([str(installed), "agent", "build", "-o", str(zipapp)], cwd=tmp_path)
    assert missing_from_zipapp(zipapp) == []
    with zipfile.ZipFile(zipapp) as archive:  # the bpftrace library, which a pushed agent lacked
        assert "crashfleet/agent/bt/vetted.sha256" in archive.namelist()


def serve_params(command: list[str], home: Path, **env: str) -> StdioServerParameters:
    """A user's environment: a home of their own, no inventory (the local machine), cwd outside the tree."""
    for sub in ("config", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    base = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
    }
    return StdioServerParameters(command=command[0], args=command[1:], env=base | env, cwd=str(home))


async def drive(params: StdioServerParameters, errlog: Path) -> tuple[set[str], dict[str, Any]]:
    """(tools listed, fleet_check of the default fleet) over stdio, as Claude Desktop would."""
    with open(errlog, "w") as log, anyio.fail_after(START):
        async with Client(stdio_client(params, errlog=log), mode="legacy") as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            return tools, structured(await client.call_tool("fleet_check", {}))


def assert_serves(params: StdioServerParameters, errlog: Path) -> None:
    tools, check = anyio.run(drive, params, errlog)
    assert tools == TOOLS
    assert check["summary"] == check["summary"] | {"total": 1, "ok": 1}, (check, errlog.read_text()[-3000:])
    assert check["groups"][0]["hosts"] == "localhost"
    assert "Traceback" not in errlog.read_text()


def test_installed_crashfleet_serves_from_outside_the_tree(installed: Path, tmp_path: Path) -> None:
    assert_serves(serve_params([str(installed), "serve"], tmp_path / "home"), tmp_path / "stderr.log")


def test_uvx_serves_offline_from_the_built_wheel(dists: tuple[Path, Path], installed: Path, tmp_path: Path) -> None:
    """`uvx --from DIST crashfleet serve` (server.json's command, from a file): offline, every
    dependency from uv's cache (the install above filled it)."""
    env = uv_env(tmp_path / "home") | {"UV_OFFLINE": "1"}
    command = [str(BIN / "uvx"), "--offline", "--from", str(dists[1]), "crashfleet", "serve"]
    keep = {k: env[k] for k in ("UV_CACHE_DIR", "UV_PYTHON_DOWNLOADS", "UV_OFFLINE")}
    assert_serves(serve_params(command, tmp_path / "home", **keep), tmp_path / "stderr.log")
