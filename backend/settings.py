"""Settings: one typed object, read once from the environment (and CLI flags).

Every setting is listed in the README's settings table. Nothing below this module
reads ``os.environ``; code receives a ``Settings`` instance instead.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

APP_NAME = "agent-tui"
DEFAULT_MODEL = "claude-sonnet-5-5"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class RateLimit:
    """``limit`` requests per ``window_seconds`` for one route class."""

    limit: int
    window_seconds: int

    @classmethod
    def parse(cls, name: str, text: str) -> RateLimit:
        """Parse ``"100/60"`` (requests per seconds)."""
        try:
            limit_text, window_text = text.split("/", 1)
            limit, window = int(limit_text), int(window_text)
        except ValueError:
            raise SettingsError(
                f"{name} must look like LIMIT/SECONDS, e.g. 100/60; got {text!r}"
            ) from None
        if limit < 1 or window < 1:
            raise SettingsError(f"{name}: limit and window must be positive; got {text!r}")
        return cls(limit, window)


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _default_config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything the backend and the app can be configured with."""

    # Where things live
    data_dir: Path = field(default_factory=_default_data_dir)
    config_dir: Path = field(default_factory=_default_config_dir)
    database_url: str = ""  # "" = SQLite file in data_dir; else postgresql://... or a SQLite path

    # HTTP server
    host: str = "127.0.0.1"
    port: int = 8787
    max_body_bytes: int = 1024 * 1024
    log_level: str = "info"

    # Model
    anthropic_api_key: str = ""
    anthropic_base_url: str = ""
    anthropic_model: str = DEFAULT_MODEL
    anthropic_max_tokens: int = 8192
    max_tool_rounds: int = 50
    # Offered by GET /v1/models when the endpoint has no models route ("" = just the default).
    anthropic_models: tuple[str, ...] = ()
    models_cache_seconds: float = 300.0
    thinking_budget_tokens: int = 4096
    # Compaction: when a call's input passes this share of the model's window.
    compaction_threshold: float = 0.75
    # The window assumed for a model the models list does not describe.
    context_window_tokens: int = 200_000
    # Live tool output: tool.output events per second per command, and bytes in all.
    tool_output_events_per_second: float = 20.0
    tool_output_stream_max_bytes: int = 256 * 1024
    # How often a turn waiting on a permission request re-reads it from the store.
    permission_poll_seconds: float = 0.5

    # The app
    start_session: str = "last"  # last: reopen the most recent session at launch | new
    # Engines: "builtin" (the agent loop here) or "opencode" (opencode serve in the sandbox)
    agent_engine: str = "builtin"
    opencode_bin: str = ""  # "" = .venv/opencode, then PATH
    opencode_start_timeout_seconds: float = 60.0
    # How a Modal sandbox reaches this server's model proxy (https://host); "" = not reachable
    public_url: str = ""

    # Sandboxes
    sandbox_provider: str = "local"  # local | modal
    unsafe_local_sandbox: bool = False
    # None: on for the embedded app (your own machine), off for `serve` (remote
    # users must not reach the host's network, its database included).
    local_sandbox_network: bool | None = None
    # Bounds of each local sandbox command (0 = none); see sandbox/local_limits.py
    local_sandbox_max_processes: int = 512
    local_sandbox_memory_mib: int = 2048
    local_sandbox_cpu_seconds: int = 600
    local_sandbox_service_cpu_seconds: int = 0  # a long-running service's (opencode serve)
    local_sandbox_max_file_mib: int = 1024
    local_sandbox_workspace_mib: int = 5120
    local_sandbox_uid_base: int = 1_000_000  # a root server's per-session sandbox users
    sandbox_idle_pause_seconds: float = 600.0
    shell_timeout_seconds: float = 120.0
    tool_output_max_bytes: int = 30_000
    modal_app_name: str = "agent-tui-sandbox"
    modal_environment: str = ""
    modal_cpu: float = 1.0
    modal_memory_mib: int = 2048
    modal_timeout_seconds: int = 3600
    modal_idle_timeout_seconds: int = 900
    modal_sweep_seconds: float = 300.0

    # Actors
    actor_idle_evict_seconds: float = 120.0
    event_buffer_size: int = 5000
    follower_queue_size: int = 10_000
    keepalive_seconds: float = 15.0

    # Auth
    key_cache_ttl_seconds: float = 5.0

    # Scale-out: replicas of `serve` share PostgreSQL and this Redis (redis:// or rediss://)
    redis_url: str = ""
    replica_id: str = ""  # "" = generated at start-up (host name + pid + random)
    drain_seconds: float = 30.0  # on shutdown, how long running turns may take to end

    # Rate limits
    upstash_redis_rest_url: str = ""
    upstash_redis_rest_token: str = ""
    rate_limit_prefix: str = "agent-tui"
    rate_limit_fail_closed: bool = False
    rate_limit_timeout_seconds: float = 0.5
    rate_limit_create_session: RateLimit = RateLimit(10, 60)
    rate_limit_send_message: RateLimit = RateLimit(100, 60)
    rate_limit_files: RateLimit = RateLimit(200, 60)
    rate_limit_default: RateLimit = RateLimit(100, 60)
    rate_limit_background: RateLimit = RateLimit(60, 60)
    max_active_sessions: int = 10

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None when the database is PostgreSQL."""
        url = self.database_url
        if url.startswith(("postgres://", "postgresql://")):
            return None
        if not url:
            return self.data_dir / "agent-tui.db"
        if url.startswith("sqlite:///"):
            return Path(url[len("sqlite:///") :])
        if url.startswith("sqlite://"):
            return Path(url[len("sqlite://") :])
        return Path(url)

    @property
    def uses_redis(self) -> bool:
        """Replicas mode: events, commands and rate limits go through Redis."""
        return bool(self.redis_url)

    @property
    def uses_upstash(self) -> bool:
        return bool(self.upstash_redis_rest_url and self.upstash_redis_rest_token)

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (flags override the environment)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every setting from ``env`` (default ``os.environ``); ``overrides`` win."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}

        def text(name: str, *aliases: str) -> str | None:
            for key in (name, *aliases):
                value = env.get(key)
                if value is not None and value != "":
                    return value
            return None

        def number(name: str, kind: type, *aliases: str) -> object | None:
            raw = text(name, *aliases)
            if raw is None:
                return None
            try:
                return kind(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a {kind.__name__}; got {raw!r}") from None

        def flag(name: str) -> bool | None:
            raw = text(name)
            if raw is None:
                return None
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"{name} must be true or false; got {raw!r}")

        strings = {
            "database_url": ("DATABASE_URL",),
            "host": ("AGENT_TUI_HOST",),
            "log_level": ("AGENT_TUI_LOG_LEVEL",),
            "anthropic_api_key": ("ANTHROPIC_API_KEY",),
            "anthropic_base_url": ("ANTHROPIC_BASE_URL",),
            "anthropic_model": ("ANTHROPIC_MODEL",),
            "sandbox_provider": ("SANDBOX_PROVIDER",),
            "modal_app_name": ("MODAL_APP_NAME",),
            "modal_environment": ("MODAL_ENVIRONMENT",),
            "upstash_redis_rest_url": ("UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_URL"),
            "upstash_redis_rest_token": ("UPSTASH_REDIS_REST_TOKEN", "UPSTASH_REDIS_TOKEN"),
            "rate_limit_prefix": ("RATE_LIMIT_PREFIX",),
            "redis_url": ("REDIS_URL",),
            "replica_id": ("AGENT_TUI_REPLICA_ID",),
            "start_session": ("AGENT_TUI_START_SESSION",),
            "agent_engine": ("AGENT_ENGINE",),
            "opencode_bin": ("OPENCODE_BIN",),
            "public_url": ("AGENT_TUI_PUBLIC_URL",),
        }
        for attr, names in strings.items():
            value = text(*names)
            if value is not None:
                values[attr] = value

        numbers: dict[str, tuple[str, type]] = {
            "port": ("AGENT_TUI_PORT", int),
            "max_body_bytes": ("MAX_BODY_BYTES", int),
            "anthropic_max_tokens": ("ANTHROPIC_MAX_TOKENS", int),
            "max_tool_rounds": ("MAX_TOOL_ROUNDS", int),
            "models_cache_seconds": ("MODELS_CACHE_SECONDS", float),
            "thinking_budget_tokens": ("THINKING_BUDGET_TOKENS", int),
            "compaction_threshold": ("COMPACTION_THRESHOLD", float),
            "context_window_tokens": ("CONTEXT_WINDOW_TOKENS", int),
            "tool_output_events_per_second": ("TOOL_OUTPUT_EVENTS_PER_SECOND", float),
            "tool_output_stream_max_bytes": ("TOOL_OUTPUT_STREAM_MAX_BYTES", int),
            "permission_poll_seconds": ("PERMISSION_POLL_SECONDS", float),
            "sandbox_idle_pause_seconds": ("SANDBOX_IDLE_PAUSE_SECONDS", float),
            "shell_timeout_seconds": ("SHELL_TIMEOUT_SECONDS", float),
            "modal_cpu": ("MODAL_CPU", float),
            "modal_memory_mib": ("MODAL_MEMORY_MIB", int),
            "modal_timeout_seconds": ("MODAL_TIMEOUT_SECONDS", int),
            "modal_idle_timeout_seconds": ("MODAL_IDLE_TIMEOUT_SECONDS", int),
            "modal_sweep_seconds": ("SANDBOX_SWEEP_SECONDS", float),
            "actor_idle_evict_seconds": ("ACTOR_IDLE_EVICT_SECONDS", float),
            "key_cache_ttl_seconds": ("KEY_CACHE_TTL_SECONDS", float),
            "drain_seconds": ("AGENT_TUI_DRAIN_SECONDS", float),
            "rate_limit_timeout_seconds": ("RATE_LIMIT_TIMEOUT_SECONDS", float),
            "max_active_sessions": ("MAX_ACTIVE_SESSIONS", int),
            "local_sandbox_max_processes": ("LOCAL_SANDBOX_MAX_PROCESSES", int),
            "local_sandbox_memory_mib": ("LOCAL_SANDBOX_MEMORY_MIB", int),
            "local_sandbox_cpu_seconds": ("LOCAL_SANDBOX_CPU_SECONDS", int),
            "local_sandbox_service_cpu_seconds": ("LOCAL_SANDBOX_SERVICE_CPU_SECONDS", int),
            "local_sandbox_max_file_mib": ("LOCAL_SANDBOX_MAX_FILE_MIB", int),
            "local_sandbox_workspace_mib": ("LOCAL_SANDBOX_WORKSPACE_MIB", int),
            "local_sandbox_uid_base": ("LOCAL_SANDBOX_UID_BASE", int),
            "opencode_start_timeout_seconds": ("OPENCODE_START_TIMEOUT_SECONDS", float),
        }
        for attr, (name, kind) in numbers.items():
            value = number(name, kind)
            if value is not None:
                values[attr] = value

        for attr, name in (
            ("unsafe_local_sandbox", "AGENT_TUI_UNSAFE_LOCAL_SANDBOX"),
            ("rate_limit_fail_closed", "RATE_LIMIT_FAIL_CLOSED"),
            ("local_sandbox_network", "LOCAL_SANDBOX_NETWORK"),
        ):
            value = flag(name)
            if value is not None:
                values[attr] = value

        for attr, name in (
            ("rate_limit_create_session", "RATE_LIMIT_CREATE_SESSION"),
            ("rate_limit_send_message", "RATE_LIMIT_SEND_MESSAGE"),
            ("rate_limit_files", "RATE_LIMIT_FILES"),
            ("rate_limit_default", "RATE_LIMIT_DEFAULT"),
            ("rate_limit_background", "RATE_LIMIT_BACKGROUND"),
        ):
            raw = text(name)
            if raw is not None:
                values[attr] = RateLimit.parse(name, raw)

        if (raw := text("ANTHROPIC_MODELS")) is not None:
            values["anthropic_models"] = tuple(m.strip() for m in raw.split(",") if m.strip())

        # platformdirs already honours XDG_DATA_HOME / XDG_CONFIG_HOME; these win over both.
        if (raw := text("AGENT_TUI_DATA_DIR")) is not None:
            values["data_dir"] = Path(raw)
        if (raw := text("AGENT_TUI_CONFIG_DIR")) is not None:
            values["config_dir"] = Path(raw)

        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``SettingsError`` for values no component could use."""
        if self.sandbox_provider not in ("local", "modal"):
            raise SettingsError(
                f"SANDBOX_PROVIDER must be local or modal; got {self.sandbox_provider!r}"
            )
        if self.start_session not in ("last", "new"):
            raise SettingsError(
                f"AGENT_TUI_START_SESSION must be last or new; got {self.start_session!r}"
            )
        if self.agent_engine not in ("builtin", "opencode"):
            raise SettingsError(
                f"AGENT_ENGINE must be builtin or opencode; got {self.agent_engine!r}"
            )
        if not 1 <= self.port <= 65535:
            raise SettingsError(f"port must be 1..65535; got {self.port}")
        if self.max_body_bytes < 1024:
            raise SettingsError("MAX_BODY_BYTES must be at least 1024")
        if self.replica_id:
            from backend.replica import REPLICA_ID_PATTERN

            if not REPLICA_ID_PATTERN.match(self.replica_id):
                raise SettingsError(
                    "AGENT_TUI_REPLICA_ID may hold only letters, digits and . _ : - "
                    f"(at most 128); got {self.replica_id!r}"
                )
        for attr in (
            "local_sandbox_max_processes",
            "local_sandbox_memory_mib",
            "local_sandbox_cpu_seconds",
            "local_sandbox_service_cpu_seconds",
            "local_sandbox_max_file_mib",
            "local_sandbox_workspace_mib",
        ):
            if getattr(self, attr) < 0:
                raise SettingsError(f"{attr.upper()} must be 0 (no bound) or positive")
        if not 1 <= self.local_sandbox_uid_base <= 2**32 - 2 - 2**20:
            raise SettingsError(
                "LOCAL_SANDBOX_UID_BASE must leave room for 2**20 uids below 2**32; "
                f"got {self.local_sandbox_uid_base}"
            )
        if not 0.1 <= self.compaction_threshold <= 0.95:
            raise SettingsError(
                f"COMPACTION_THRESHOLD must be between 0.1 and 0.95; got {self.compaction_threshold}"
            )
        if self.thinking_budget_tokens < 1024:
            raise SettingsError("THINKING_BUDGET_TOKENS must be at least 1024 (the API's minimum)")
