"""Cloning a session's repository into a local workspace without leaking the token.

The git token reaches git only through the clone command's environment, as an
``http.<origin>/.extraHeader`` given by ``GIT_CONFIG_COUNT``/``KEY``/``VALUE``:
never in the URL (git would write it to ``.git/config``), never on the command
line (visible in ``ps``), never in a later command's environment. Git runs
with no system or global config, so the server user's credential helpers and
stored credentials are not used for a user's clone either.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from sandbox.base import SandboxError

__all__ = [
    "RepoSource",
    "check_token",
    "clone_argv",
    "clone_env",
    "clone_failure_message",
    "parse_repo",
    "redact",
]

_SHORTHAND = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
_AUTH_FAILURE = (
    "repository not found",
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "the requested url returned error: 404",
)
_UNREACHABLE = (
    "could not resolve host",
    "failed to connect",
    "connection timed out",
    "connection refused",
)


@dataclass(frozen=True)
class RepoSource:
    """What to clone: ``url`` for git, ``display`` for people, and for a
    ``file://`` repository (tests only) the directory the sandbox must see."""

    url: str
    display: str
    local_path: str | None = None

    @property
    def origin(self) -> str:
        """``scheme://host/``: the only place the token header is sent to."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}/"


def parse_repo(repo: str, *, allow_file: bool = False) -> RepoSource:
    """``owner/repo`` (GitHub) or an ``https://`` git URL; ``file://`` only when
    ``allow_file``. Raises ``SandboxError`` with a message a user can act on."""
    repo = repo.strip()
    if _SHORTHAND.match(repo) and not any(part in (".", "..") for part in repo.split("/")):
        return RepoSource(url=f"https://github.com/{repo.removesuffix('.git')}.git", display=repo)
    parts = urlsplit(repo)
    if parts.scheme == "file" and allow_file and parts.path:
        return RepoSource(url=repo, display=repo, local_path=unquote(parts.path))
    if parts.scheme != "https" or not parts.hostname:
        raise SandboxError(
            "The repository must be 'owner/repo' (GitHub) or an https:// git URL",
            details={"repo": redact(repo, None)},
        )
    if parts.username or parts.password:
        raise SandboxError(
            "Put credentials in gitToken, not in the repository URL",
            details={"repo": redact(repo, None)},
        )
    return RepoSource(url=repo, display=repo)


def clone_argv(git: str, source: RepoSource) -> list[str]:
    """Clone into the current directory (the empty workspace)."""
    if source.local_path:
        # A local repository (tests) belongs to another user than the
        # sandbox's, which git refuses unless told; git clears config given
        # through the environment for a local transport, so it goes here.
        upload = (
            f"{shlex.quote(git)} -c safe.directory={shlex.quote(source.local_path)} upload-pack"
        )
        return [git, "clone", "--quiet", "--upload-pack", upload, "--", source.url, "."]
    return [git, "clone", "--quiet", "--", source.url, "."]


def clone_env(base: dict[str, str], source: RepoSource, token: str | None) -> dict[str, str]:
    """The clone command's environment: ``base`` plus git settings and the token."""
    env = dict(base)
    env.update(
        {
            # No prompt for a username: fail at once with "could not read Username".
            "GIT_TERMINAL_PROMPT": "0",
            "GCM_INTERACTIVE": "never",
            # The server user's git config may hold credential helpers for
            # their own repositories.
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            # No ext:: or ssh transports reached through submodules or redirects.
            "GIT_ALLOW_PROTOCOL": "file" if source.local_path else "https",
        }
    )
    config: list[tuple[str, str]] = []
    if token:
        check_token(token)
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        config.append((f"http.{source.origin}.extraHeader", f"Authorization: Basic {basic}"))
    if config:
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def clone_failure_message(
    source: RepoSource, stderr: str, token: str | None, *, timed_out: bool = False
) -> str:
    """What went wrong, in words a user can act on, with no secret in it."""
    if timed_out:
        return f"Could not clone {source.display}: the clone took too long"
    text = redact(stderr, token)
    lowered = text.lower()
    if any(marker in lowered for marker in _AUTH_FAILURE):
        advice = (
            "check that the gitToken can read it" if token else "pass a gitToken that can read it"
        )
        return f"Could not clone {source.display}: the repository does not exist or is private ({advice})"
    if any(marker in lowered for marker in _UNREACHABLE):
        return f"Could not clone {source.display}: the git server is unreachable"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if line.lower().startswith(("fatal:", "error:"))]
    reason = (fatal or lines or ["git failed"])[-1]
    return f"Could not clone {source.display}: {reason[:300]}"


def redact(text: str, token: str | None) -> str:
    """``text`` without the token (plain or in its header form) or URL credentials."""
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        text = text.replace(basic, "***").replace(token, "***")
    return _URL_CREDENTIALS.sub("***@", text)


def check_token(token: str) -> None:
    """Refuse a token that is not a single clean line (raise ``SandboxError``)."""
    # A newline would let the "token" add headers of its own.
    if not token.isprintable() or token != token.strip():
        raise SandboxError(
            "The gitToken is not valid: it must be a single line without spaces around it"
        )
