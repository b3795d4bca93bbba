"""The user's config file: saved remote profiles, the embedded admin key, an Anthropic key.

One JSON file, ``<Settings.config_dir>/config.json``, readable by its owner only
(0600, in a 0700 directory) because it holds secrets. It is written atomically
(a private temporary file renamed over the old one), so a crash never leaves half
a file. Unknown fields are kept, so an older agent-tui does not erase what a
newer one saved.

    {
      "version": 1,
      "defaultProfile": "work",
      "profiles": {"work": {"url": "https://agents.example.com", "apiKey": "aa_live_..."}},
      "embedded": {"apiKey": "aa_live_..."},
      "anthropic": {"apiKey": "sk-ant-...", "baseUrl": ""}
    }
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.settings import Settings

CONFIG_FILENAME = "config.json"
CONFIG_VERSION = 1
API_KEY_ENV = "AGENT_TUI_API_KEY"


class ConfigError(ValueError):
    """The config file exists but cannot be used; the message names the file."""


@dataclass
class RemoteProfile:
    """A saved remote server: where it is and the key to use there."""

    name: str
    url: str
    api_key: str = ""


@dataclass
class UserConfig:
    """The contents of the config file."""

    profiles: dict[str, RemoteProfile] = field(default_factory=dict)
    default_profile: str | None = None
    embedded_api_key: str = ""
    anthropic_api_key: str = ""
    anthropic_base_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know

    def add_profile(
        self, name: str, url: str, api_key: str = "", *, default: bool = False
    ) -> RemoteProfile:
        """Save (or replace) a remote profile; the first one saved becomes the default."""
        profile = RemoteProfile(name=name, url=url.rstrip("/"), api_key=api_key)
        self.profiles[name] = profile
        if default or self.default_profile is None:
            self.default_profile = name
        return profile

    def profile_for(self, name_or_url: str | None) -> RemoteProfile | None:
        """The profile with this name, else the one with this URL, else (for None) the default."""
        if name_or_url is None:
            return self.profiles.get(self.default_profile or "")
        if name_or_url in self.profiles:
            return self.profiles[name_or_url]
        url = name_or_url.rstrip("/")
        return next((p for p in self.profiles.values() if p.url == url), None)

    def apply_to(self, settings: Settings) -> Settings:
        """Settings with the saved Anthropic key and base URL filled in where the environment left them empty."""
        changes: dict[str, object] = {}
        if not settings.anthropic_api_key and self.anthropic_api_key:
            changes["anthropic_api_key"] = self.anthropic_api_key
        if not settings.anthropic_base_url and self.anthropic_base_url:
            changes["anthropic_base_url"] = self.anthropic_base_url
        return settings.replace(**changes) if changes else settings

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        data["version"] = CONFIG_VERSION
        data["defaultProfile"] = self.default_profile
        data["profiles"] = {
            p.name: {"url": p.url, "apiKey": p.api_key} for p in self.profiles.values()
        }
        data["embedded"] = {"apiKey": self.embedded_api_key}
        data["anthropic"] = {"apiKey": self.anthropic_api_key, "baseUrl": self.anthropic_base_url}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UserConfig:
        def section(name: str) -> Mapping[str, Any]:
            value = data.get(name)
            return value if isinstance(value, Mapping) else {}

        profiles: dict[str, RemoteProfile] = {}
        for name, raw in section("profiles").items():
            if isinstance(raw, Mapping) and isinstance(raw.get("url"), str):
                profiles[name] = RemoteProfile(name, raw["url"], str(raw.get("apiKey") or ""))
        known = {"version", "defaultProfile", "profiles", "embedded", "anthropic"}
        default = data.get("defaultProfile")
        return cls(
            profiles=profiles,
            default_profile=default if isinstance(default, str) else None,
            embedded_api_key=str(section("embedded").get("apiKey") or ""),
            anthropic_api_key=str(section("anthropic").get("apiKey") or ""),
            anthropic_base_url=str(section("anthropic").get("baseUrl") or ""),
            extra={k: v for k, v in data.items() if k not in known},
        )


def config_path(config_dir: Path | Settings) -> Path:
    """The config file inside ``config_dir`` (or ``settings.config_dir``)."""
    directory = config_dir.config_dir if isinstance(config_dir, Settings) else config_dir
    return Path(directory) / CONFIG_FILENAME


def load_config(config_dir: Path | Settings) -> UserConfig:
    """Read the config file; an empty ``UserConfig`` when there is none yet."""
    path = config_path(config_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return UserConfig()
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return UserConfig.from_json(data)


def save_config(config_dir: Path | Settings, config: UserConfig) -> Path:
    """Write the config file atomically, mode 0600 in a 0700 directory; return its path."""
    path = config_path(config_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n"
    # mkstemp creates the file 0600 from the start: the secret is never readable
    # by others, not even between create and chmod.
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve_remote(
    config: UserConfig,
    remote: str | None,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
) -> RemoteProfile:
    """The server and key for remote mode.

    ``remote`` is ``--remote`` (a URL or a saved profile's name; None means the
    default profile). The key is, first found: ``--api-key``, ``AGENT_TUI_API_KEY``
    in ``env``, the matching saved profile. Raises ``ConfigError`` naming what is missing.
    """
    env = os.environ if env is None else env
    profile = config.profile_for(remote)
    if profile is None:
        if remote is None:
            raise ConfigError("No --remote URL given and no default profile saved")
        if not remote.startswith(("http://", "https://")):
            raise ConfigError(f"{remote!r} is neither a saved profile nor an http(s) URL")
        profile = RemoteProfile(name=remote, url=remote.rstrip("/"))
    key = api_key or env.get(API_KEY_ENV) or profile.api_key
    if not key:
        raise ConfigError(
            f"No API key for {profile.url}: pass --api-key, set {API_KEY_ENV}, "
            "or save it in a profile"
        )
    return RemoteProfile(name=profile.name, url=profile.url, api_key=key)
