"""The HTTP bearer token: from the environment, else generated once, kept private."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from crashfleet.controller.errors import CrashfleetError
from crashfleet.controller.server import http_token
from crashfleet.controller.settings import Settings


def test_token_from_settings_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert http_token(Settings(http_token=SecretStr("s3cret"))) == "s3cret"
    assert not (tmp_path / "crashfleet" / "http-token").exists()


def test_empty_token_means_generate_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    token = http_token(Settings(http_token=SecretStr("  ")))
    path = tmp_path / "crashfleet" / "http-token"
    assert len(token) >= 32 and path.read_text().strip() == token
    assert path.stat().st_mode & 0o777 == 0o600
    assert http_token(Settings()) == token  # reused, not regenerated


def test_token_file_others_can_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = tmp_path / "crashfleet" / "http-token"
    path.parent.mkdir()
    path.write_text("leaked\n")
    os.chmod(path, 0o644)
    with pytest.raises(CrashfleetError, match="readable by others"):
        http_token(Settings())
