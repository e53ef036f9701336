"""`crashfleet bundle`: validated, inspected and re-packed by the official mcpb CLI, then unpacked and
started the way Claude Desktop starts it (manifest command/args/env, ${...} substituted; uv installs the
dependencies from PyPI) and driven over stdio by the MCP SDK client on the sshd rig."""

from __future__ import annotations

import json
import os
import re
import struct
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from mcp import Client, StdioServerParameters, stdio_client

from tests.bundle.conftest import CACHE, run
from tests.e2e.conftest import LEGACY, TOOLS, assert_no_agents, structured
from tests.rig import Rig

pytestmark = pytest.mark.timeout(600)

BIN = Path(sys.executable).parent
FIRST_START = 300.0  # the first start has uv download and install the dependencies; later ones reuse its cache
PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
# The desktop session's own network settings (CA bundle, proxy, index), which uv needs to reach PyPI.
PASSED_THROUGH = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "UV_DEFAULT_INDEX")


@pytest.fixture(scope="module")
def bundle(mcpb: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built by `crashfleet bundle`, checked by `mcpb info`/`unpack`/`validate`, re-packed by `mcpb pack`."""
    work = tmp_path_factory.mktemp("mcpb")
    built = work / "crashfleet.mcpb"
    out = run([str(BIN / "crashfleet"), "bundle", "-o", str(built)], cwd=work).stdout
    assert "Claude Desktop" in out and built.stat().st_size > 0, out
    info = run([str(mcpb), "info", str(built)]).stdout
    assert "crashfleet.mcpb" in info, info
    run([str(mcpb), "unpack", str(built), str(work / "unpacked")])
    checked = run([str(mcpb), "validate", str(work / "unpacked" / "manifest.json")])
    assert "validation passes" in checked.stdout + checked.stderr, checked.stdout + checked.stderr
    run([str(mcpb), "pack", str(work / "unpacked"), str(work / "repacked.mcpb")])
    return {"built": built, "unpacked": work / "unpacked", "repacked": work / "repacked.mcpb"}


def test_manifest_describes_a_uv_bundle(bundle: dict[str, Path]) -> None:
    manifest = json.loads((bundle["unpacked"] / "manifest.json").read_text())
    assert manifest["manifest_version"] == "0.4" and manifest["server"]["type"] == "uv", manifest["server"]
    assert (bundle["unpacked"] / manifest["server"]["entry_point"]).is_file()
    assert (bundle["unpacked"] / "pyproject.toml").is_file()
    config = manifest["user_config"]
    assert {k: v["type"] for k, v in config.items()} == {
        "inventory": "file",
        "known_hosts": "file",
        "ssh_key": "file",
        "fanout": "number",
    }
    assert config["ssh_key"].get("sensitive") is True and not config["inventory"]["required"]
    assert {t["name"] for t in manifest["tools"]} >= TOOLS, manifest["tools"]
    assert {p["name"] for p in manifest["prompts"]} == {"kernel_panics", "latency", "packet_loss", "host_health"}
    assert manifest["compatibility"]["runtimes"]["python"] == ">=3.11"
    icon = (bundle["unpacked"] / manifest["icon"]).read_bytes()
    assert icon.startswith(b"\x89PNG\r\n\x1a\n") and icon[12:16] == b"IHDR", icon[:32]
    assert struct.unpack(">II", icon[16:24]) == (512, 512)  # what MCPB recommends


def claude_desktop_params(bundle_dir: Path, home: Path, values: dict[str, Any]) -> StdioServerParameters:
    """command/args/env as Claude Desktop derives them: ${__dirname}, ${HOME}, ${user_config.KEY} replaced,
    unset options taking their manifest default (or "")."""
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    defaults = {k: v.get("default", "") for k, v in manifest["user_config"].items()}

    def resolve(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key == "__dirname":
                return str(bundle_dir)
            if key == "HOME":
                return str(home)
            name = key.removeprefix("user_config.")
            return resolve(str(values.get(name, defaults.get(name, ""))))

        return PLACEHOLDER.sub(one, text)

    config = manifest["server"]["mcp_config"]
    for sub in ("config", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{BIN}:{os.environ.get('PATH', os.defpath)}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        # what the host's uv would have: a shared cache; Python from this machine, not a download
        "UV_CACHE_DIR": str(CACHE / "uv"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    env |= {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env |= {name: resolve(value) for name, value in config.get("env", {}).items()}
    return StdioServerParameters(
        command=resolve(config["command"]), args=[resolve(a) for a in config["args"]], env=env, cwd=str(home)
    )


def keyless_inventory(rig: Rig, path: Path) -> Path:
    """The rig's hosts without ansible_ssh_private_key_file: the bundle's SSH key setting must supply it."""
    doc = yaml.safe_load(rig.inventory.read_text())
    for group in doc["all"]["children"].values():
        for host_vars in group["hosts"].values():
            host_vars.pop("ansible_ssh_private_key_file")
    path.write_text(yaml.safe_dump(doc))
    return path


async def drive(
    params: StdioServerParameters,
    errlog: Path,
    calls: list[tuple[str, dict[str, Any]]],
) -> tuple[str | None, list[str], list[dict[str, Any]]]:
    """(instructions, tool names, structured answers of `calls`) from one Claude-Desktop-like session."""
    with open(errlog, "w") as log, anyio.fail_after(FIRST_START):
        async with Client(stdio_client(params, errlog=log), mode="legacy") as client:
            assert client.protocol_version == LEGACY
            init = client.session.initialize_result
            tools = [t.name for t in (await client.list_tools()).tools]
            answers = [structured(await client.call_tool(name, args)) for name, args in calls]
            prompts = await client.list_prompts()
            assert len(prompts.prompts) == 4, prompts
            return (init.instructions if init else None), tools, answers


def test_installed_bundle_runs_on_the_rig(bundle: dict[str, Path], mcpb: Path, rig: Rig, tmp_path: Path) -> None:
    install = tmp_path / "Claude Extensions" / "crashfleet"  # a space, as in Claude Desktop's real path
    run([str(mcpb), "unpack", str(bundle["repacked"]), str(install)])
    values = {
        "inventory": str(keyless_inventory(rig, tmp_path / "inventory.yml")),
        "known_hosts": str(rig.known_hosts),
        "ssh_key": str(rig.client_key),
        "fanout": 2,
    }
    params = claude_desktop_params(install, tmp_path / "home", values)
    assert params.command == "uv" and str(install) in params.args, params
    instructions, tools, answers = anyio.run(
        drive, params, tmp_path / "stderr.log", [("fleet_check", {"pattern": "web01:web02:web03"})]
    )
    assert set(tools) >= TOOLS
    [check] = answers
    assert check["summary"]["ok"] == 3, (check, (tmp_path / "stderr.log").read_text()[-3000:])
    assert [g["hosts"] for g in check["groups"]] == ["web[01-03]"], check["groups"]
    assert "no inventory" not in (instructions or "")
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()
    assert_no_agents(rig)


def test_bundle_without_inventory_says_how_to_set_it(bundle: dict[str, Path], mcpb: Path, tmp_path: Path) -> None:
    install = tmp_path / "crashfleet"
    run([str(mcpb), "unpack", str(bundle["repacked"]), str(install)])
    params = claude_desktop_params(install, tmp_path / "home", {})  # nothing configured: defaults and blanks
    assert params.env is not None and params.env["CRASHFLEET_INVENTORY"] == ""
    instructions, _, answers = anyio.run(drive, params, tmp_path / "stderr.log", [("fleet_hosts", {})])
    for said in (instructions or "", answers[0]["note"], (tmp_path / "stderr.log").read_text()):
        assert "no inventory is configured" in said and "Configure > Ansible inventory" in said, said
    assert answers[0]["count"] == 1, answers[0]  # the local machine only
