"""The user config file: round trip, permissions, robustness, remote resolution."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agent_tui.config import (
    ConfigError,
    UserConfig,
    config_path,
    load_config,
    resolve_remote,
    save_config,
)
from backend.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_config(tmp_path / "nowhere")
    assert config == UserConfig()


def test_round_trip_with_owner_only_permissions(tmp_path: Path) -> None:
    config_dir = tmp_path / "cfg"
    config = UserConfig(embedded_api_key="aa_live_" + "a" * 32, anthropic_api_key="sk-ant-x")
    config.add_profile("work", "https://agents.example.com/", "aa_live_" + "b" * 32)
    config.add_profile("lab", "http://lab:8787")
    path = save_config(config_dir, config)

    assert path == config_path(config_dir) == config_dir / "config.json"
    assert mode(path) == 0o600
    assert mode(config_dir) == 0o700
    loaded = load_config(Settings(config_dir=config_dir, data_dir=tmp_path))
    assert loaded == config
    assert loaded.default_profile == "work"  # the first profile saved
    assert loaded.profiles["work"].url == "https://agents.example.com"
    assert not list(config_dir.glob(".config-*"))  # no temporary file left behind


def test_saving_again_keeps_0600_and_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"theme": "dark", "embedded": {"apiKey": "old"}}))
    path.chmod(0o644)
    config = load_config(tmp_path)
    config.embedded_api_key = "new"
    save_config(tmp_path, config)
    data = json.loads(path.read_text())
    assert data["theme"] == "dark"
    assert data["embedded"] == {"apiKey": "new"}
    assert mode(path) == 0o600


def test_a_broken_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(tmp_path)


def test_saved_anthropic_settings_fill_only_what_the_environment_left_empty(tmp_path: Path) -> None:
    config = UserConfig(anthropic_api_key="saved", anthropic_base_url="http://saved")
    empty = Settings(data_dir=tmp_path, config_dir=tmp_path)
    assert config.apply_to(empty).anthropic_api_key == "saved"
    assert config.apply_to(empty).anthropic_base_url == "http://saved"
    from_env = empty.replace(anthropic_api_key="env")
    assert config.apply_to(from_env).anthropic_api_key == "env"
    assert UserConfig().apply_to(empty) is empty


def test_resolve_remote_precedence() -> None:
    config = UserConfig()
    config.add_profile("work", "https://w.example", "profile-key")
    env = {"AGENT_TUI_API_KEY": "env-key"}

    assert resolve_remote(config, "https://w.example/", "flag-key", env).api_key == "flag-key"
    assert resolve_remote(config, "https://w.example", None, env).api_key == "env-key"
    assert resolve_remote(config, "https://w.example", None, {}).api_key == "profile-key"
    by_name = resolve_remote(config, "work", None, {})
    assert (by_name.url, by_name.api_key) == ("https://w.example", "profile-key")
    default = resolve_remote(config, None, None, {})
    assert default.name == "work"
    other = resolve_remote(config, "http://other:8787", "k", {})
    assert (other.url, other.api_key) == ("http://other:8787", "k")

    with pytest.raises(ConfigError, match="No API key"):
        resolve_remote(config, "http://other:8787", None, {})
    with pytest.raises(ConfigError, match="neither"):
        resolve_remote(config, "nonsense", None, {})
    with pytest.raises(ConfigError, match="default profile"):
        resolve_remote(UserConfig(), None, None, {})
