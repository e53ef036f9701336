"""server.json (the MCP registry entry): valid against the registry's published schema, true to the code,
and the server it describes starts as a registry client would start it (package arguments and env)."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from mcp import Client, StdioServerParameters, stdio_client
from pydantic import SecretStr

from crashfleet.controller.settings import Settings
from tests.e2e.conftest import START_TIMEOUT, structured

ROOT = Path(__file__).resolve().parents[2]
SERVER_JSON = ROOT / "server.json"
SCHEMA = ROOT / "tests" / "data" / "server.schema.json"
PREFIX = "CRASHFLEET_"
NOT_FOR_STDIO = {"http_host", "http_port", "http_token"}  # `crashfleet serve --transport http` only
FORMATS = {bool: "boolean", int: "number", float: "number", str: "string", Path: "filepath"}


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def validator() -> jsonschema.Draft7Validator:
    schema = load(SCHEMA)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def package() -> dict[str, Any]:
    [pypi] = [p for p in load(SERVER_JSON)["packages"] if p["registryType"] == "pypi"]
    return pypi  # type: ignore[no-any-return]


def env_vars() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in package()["environmentVariables"]}


def field_of(name: str) -> str:
    assert name.startswith(PREFIX), f"{name}: crashfleet reads only {PREFIX}* variables"
    return name.removeprefix(PREFIX).lower()


def test_valid_against_the_registry_schema() -> None:
    errors = sorted(validator().iter_errors(load(SERVER_JSON)), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_rejects_what_the_registry_rejects() -> None:
    """The vendored schema really constrains: the same file with the registry's classic mistakes fails."""
    check = validator()
    doc = load(SERVER_JSON)
    latest = copy.deepcopy(doc)
    latest["packages"][0]["version"] = "latest"
    nameless = copy.deepcopy(doc)
    del nameless["packages"][0]["environmentVariables"][0]["name"]
    slashless = copy.deepcopy(doc) | {"name": "crashfleet"}
    for bad in (latest, nameless, slashless):
        assert list(check.iter_errors(bad)), bad


def test_schema_url_is_the_vendored_schemas_id() -> None:
    schema = load(SCHEMA)
    assert load(SERVER_JSON)["$schema"] == schema["$id"]
    source = (SCHEMA.parent / "server.schema.json.source").read_text()
    assert schema["$id"] in source and "modelcontextprotocol/registry" in source, source


def test_versions_and_description_are_the_package_s() -> None:
    doc = load(SERVER_JSON)
    version = importlib.metadata.version("crashfleet")
    assert doc["version"] == version and package()["version"] == version, (doc["version"], version)
    assert package()["identifier"] == "crashfleet" and package()["transport"] == {"type": "stdio"}
    assert doc["description"] == importlib.metadata.metadata("crashfleet")["Summary"]
    # PyPI ownership: the registry looks for this line in the package's README (its long description).
    assert f"mcp-name: {doc['name']}" in (ROOT / "README.md").read_text()


def test_env_vars_are_the_settings_fields() -> None:
    fields = Settings.model_fields
    named = {field_of(name) for name in env_vars()}
    assert not named - fields.keys(), f"not Settings fields: {sorted(named - fields.keys())}"
    missing = fields.keys() - named - NOT_FOR_STDIO
    assert not missing, f"Settings fields server.json does not describe: {sorted(missing)}"
    for name, var in env_vars().items():
        info = fields[field_of(name)]
        kinds = {t for t in FORMATS if t in _types(info.annotation)}
        assert var["format"] in {FORMATS[t] for t in kinds}, (name, var["format"], info.annotation)
        secret = SecretStr in _types(info.annotation) or (info.json_schema_extra or {}).get("secret") is True
        assert var.get("isSecret", False) is secret, f"{name}: isSecret should be {secret}"
        assert var.get("description"), f"{name}: no description"


def test_defaults_are_the_settings_defaults() -> None:
    """Each documented default, given as the env var a client would set, changes nothing."""
    base = Settings()
    for name, var in env_vars().items():
        if "default" not in var:
            continue
        field = field_of(name)
        given = Settings(**{field: var["default"]})
        if field == "ssh_known_hosts":
            assert given.ssh_known_hosts_path() == base.ssh_known_hosts_path()
        else:
            assert getattr(given, field) == getattr(base, field), (name, var["default"], getattr(base, field))


def _types(annotation: Any) -> set[Any]:
    args = getattr(annotation, "__args__", None)
    return set(args) if args else {annotation}


def test_server_starts_as_a_registry_client_starts_it(tmp_path: Path) -> None:
    """The package's binary with packageArguments and every documented default in its env: an MCP server
    on stdio (no inventory set: this machine only, and it says how to set one)."""
    args = [a["value"] for a in package()["packageArguments"]]
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    env |= {name: var["default"] for name, var in env_vars().items() if "default" in var}
    params = StdioServerParameters(
        command=str(Path(sys.executable).parent / "crashfleet"), args=args, env=env, cwd=str(tmp_path)
    )

    async def drive() -> tuple[str, dict[str, Any]]:
        with open(tmp_path / "stderr.log", "w") as log, anyio.fail_after(START_TIMEOUT * 3):
            async with Client(stdio_client(params, errlog=log), mode="legacy") as client:
                init = client.session.initialize_result
                hosts = structured(await client.call_tool("fleet_hosts", {}))
                return (init.instructions or "") if init else "", hosts

    instructions, hosts = anyio.run(drive)
    assert hosts["count"] == 1, hosts
    assert "CRASHFLEET_INVENTORY" in instructions and "CRASHFLEET_INVENTORY" in hosts["note"], (instructions, hosts)


@pytest.mark.parametrize("name", ["CRASHFLEET_FANOUT", "CRASHFLEET_PAGE_TOKENS"])
def test_out_of_range_values_are_refused_clearly(name: str, tmp_path: Path) -> None:
    """What the descriptions promise (ranges) is what Settings enforces."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field_of(name)):
        Settings(**{field_of(name): "0"})
