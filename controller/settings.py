"""Controller configuration: CRASHFLEET_* env vars, a .env file, then config.toml."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

NO_INVENTORY = (
    "no inventory is configured, so crashfleet sees only this machine: set CRASHFLEET_INVENTORY "
    "to an Ansible inventory file (Claude Desktop: Settings > Extensions > crashfleet > Configure > "
    "Ansible inventory; or `crashfleet -i FILE`)"
)


def config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "crashfleet"


def state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "crashfleet"


class Settings(BaseSettings):
    """Every knob, with the default a new user wants."""

    model_config = SettingsConfigDict(
        env_prefix="CRASHFLEET_", env_file=".env", extra="ignore", toml_file=config_dir() / "config.toml"
    )

    inventory: Path | None = Field(default=None, description="Ansible inventory; none means the local machine only")
    ssh_known_hosts: Path | None = Field(default=None, description="known_hosts file (default ~/.ssh/known_hosts)")
    ssh_accept_new: bool = Field(
        False, description="record first-seen host keys (ssh's accept-new); changed keys are always refused"
    )
    ssh_key: Path | None = Field(
        default=None,
        description="private key for hosts without ansible_ssh_private_key_file (else ssh-agent, ~/.ssh)",
        json_schema_extra={"secret": True},
    )  # a path, but to a secret
    ssh_config: Path | None = Field(
        default=None, description="extra OpenSSH client config (~/.ssh/config is always read)"
    )
    ssh_connect_timeout: float | None = Field(
        None,
        gt=0,
        description="limit of SSH connect + login alone; unset, they share the host deadline with every other stage",
    )
    ssh_keepalive: float = Field(5.0, gt=0, description="seconds between SSH keepalives on an idle link")
    ssh_keepalive_count: int = Field(
        3,
        ge=1,
        description="keepalives unanswered before a link is dead: "
        "a silent partition is seen within interval x (count+1)",
    )
    fanout: int = Field(64, ge=1, le=4096, description="hosts worked on at once")
    host_deadline: float = Field(30.0, gt=0, description="seconds one host may take in a fan-out")
    page_tokens: int = Field(4000, ge=500, le=25000, description="page budget of a tool result")
    command_wait: float = Field(20.0, ge=0, le=120, description="seconds a command may run before it becomes a job")
    call_budget: float = Field(
        40.0,
        ge=1,
        le=3600,
        description="seconds an MCP tool call may take: then it answers with what is done and a job for the rest "
        "(Claude Desktop gives up on a call after ~60 s)",
    )
    task_after: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="seconds a tool call of a client that opts into MCP tasks may take: then it answers with a task",
    )
    consent_hosts: int = Field(20, ge=0, description="a capture on more hosts asks the person first (elicitation)")
    consent_seconds: float = Field(120.0, ge=0, description="a capture longer than this asks the person first")
    consent_hz: int = Field(99, ge=0, description="a CPU profile above this many samples per second asks first")
    consent_bytes: int = Field(
        100 << 20,
        ge=0,
        description="a debuginfod download over this asks first (one whose size is unknown before it starts does)",
    )
    consent_without_client: str = Field(
        "refuse",
        pattern=r"^(refuse|allow)$",
        description="when consent is needed and the client cannot ask (no elicitation): refuse, naming the "
        "command to run from a terminal, or allow",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(8765, ge=1, le=65535)
    http_token: SecretStr | None = None
    audit_log: Path | None = Field(default=None, description="JSON-lines audit log (default in the XDG state dir)")
    controller_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{8,64}$",
        description="who this controller is to its agents (jobs reattach to it "
        "after a restart); default: kept in the XDG state dir",
    )
    drgn_scripts: str = Field("", description="dirs of extra drgn analysis scripts, separated by ':'")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, TomlConfigSettingsSource(settings_cls))

    def ssh_known_hosts_path(self) -> Path:
        return (self.ssh_known_hosts or Path("~/.ssh/known_hosts")).expanduser()

    def audit_path(self) -> Path:
        return self.audit_log or state_dir() / "audit.jsonl"

    def controller_key(self) -> str:
        """This controller's id, the same across restarts: a new file the first time."""
        if self.controller_id:
            return self.controller_id
        path = state_dir() / "controller-id"
        try:
            key = path.read_text().strip()
            if re.fullmatch(r"[0-9a-f]{8,64}", key):
                return key
        except OSError:
            pass
        key = secrets.token_hex(8)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(key + "\n")
        tmp.replace(path)
        return key

    def drgn_script_dirs(self) -> list[Path]:
        return [Path(d).expanduser() for d in self.drgn_scripts.split(":") if d.strip()]

    @property
    def page_chars(self) -> int:
        """The page budget in characters (~4 per token)."""
        return self.page_tokens * 4
