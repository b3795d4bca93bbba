"""A fake of the ``modal`` package surface that ``sandbox/modal_provider.py`` uses.

Every entry point is checked against the installed SDK before it runs:

- ``X.aio(...)`` binds its arguments to ``inspect.signature(real_X.aio)`` (minus
  ``self``), so a renamed or unknown parameter raises ``TypeError`` here just as
  it would against Modal;
- calling the blocking form ``X(...)`` fails the test: the server must use
  ``.aio`` (and ``Image.from_id.aio``, deprecated, fails too);
- the local validations the real SDK does before any network call (absolute
  ``workdir``, ``timeout`` not None, string argv under 64 KiB, env key syntax,
  absolute filesystem paths, bytes for ``write_bytes``) are repeated, reusing
  the SDK's own helpers where it has them.

Behind that surface a ``FakeModalCloud`` keeps apps, sandboxes and snapshot
images. A sandbox's filesystem is a host directory (``root``): sandbox path
``/x/y`` is ``root/x/y``. ``exec`` runs the real argv with the host's bash, after
mapping arguments that are sandbox paths (``/workspace...``, ``/tmp/...``,
``/var/lib/agent-tui...``) or known clone URLs to host paths, and it maps
``root`` back out of the output, so ``realpath`` and ``pwd`` print sandbox paths.
The provider passes every absolute path as its own argv item, never inside a
script, which is what makes this mapping sound.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import secrets
import shutil
import signal
import string
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import modal
import modal.exception
import modal.io_streams
from modal._utils.name_utils import check_tag_dict
from modal._utils.sandbox_fs_utils import validate_absolute_remote_path
from modal.container_process import ContainerProcess
from modal.sandbox.sandbox import SandboxFilesystem
from modal.types import FileInfo, FileType

exc = modal.exception
ARG_MAX_BYTES = 2**16
MAPPED_PREFIXES = ("/workspace", "/tmp", "/var/lib/agent-tui")
_ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_NPM_INSTALL = re.compile(r"npm install -g ([@a-z0-9/._-]+)@([0-9][0-9A-Za-z.+-]*)")


def _random_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(22))


def _real_signature(real: Any) -> inspect.Signature:
    """The signature callers must match: the real ``.aio`` (or plain callable), minus self/cls."""
    sig = inspect.signature(getattr(real, "aio", real))
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls"):
        sig = sig.replace(parameters=params[1:])
    return sig


@dataclass
class Call:
    """One call the fake received, after it bound against the real signature."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class AioEntry:
    """An async SDK entry point (``Sandbox.create``, ``sb.exec``, ...): use ``.aio``."""

    def __init__(
        self, cloud: FakeModalCloud, name: str, real: Any, impl: Callable[..., Any]
    ) -> None:
        self._cloud, self._name, self._impl = cloud, name, impl
        self.signature = _real_signature(real)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(
            f"blocking call to {self._name}(); async code must use {self._name}.aio()"
        )

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{self._name}.aio{self.signature}: {error}") from None
        self._cloud.calls.append(Call(self._name, args, kwargs))
        return self._impl(*args, **kwargs)


class SyncEntry:
    """A sync SDK call that does no IO (``Image.from_id``, image builders)."""

    def __init__(
        self, cloud: FakeModalCloud, name: str, real: Any, impl: Callable[..., Any]
    ) -> None:
        self._cloud, self._name, self._impl = cloud, name, impl
        self.signature = _real_signature(real)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{self._name}{self.signature}: {error}") from None
        self._cloud.calls.append(Call(self._name, args, kwargs))
        return self._impl(*args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(
            f"{self._name} is sync in modal {modal.__version__}; its .aio is deprecated"
        )


# ---------------------------------------------------------------------- images and apps


class FakeImage:
    """An image: a recipe (built from ``debian_slim()``), a snapshot, or a lazy ``from_id``."""

    def __init__(
        self, cloud: FakeModalCloud, object_id: str | None = None, recipe: tuple[str, ...] = ()
    ) -> None:
        self.object_id = object_id
        self.recipe = recipe
        self.env_vars: dict[str, str] = {}
        real = modal.Image
        for method in (
            "apt_install",
            "run_commands",
            "env",
            "workdir",
            "pip_install",
            "uv_pip_install",
        ):
            setattr(
                self,
                method,
                SyncEntry(
                    cloud, f"Image.{method}", getattr(real, method), self._chain(cloud, method)
                ),
            )

    def _chain(self, cloud: FakeModalCloud, method: str) -> Callable[..., FakeImage]:
        def step(*args: Any, **kwargs: Any) -> FakeImage:
            image = FakeImage(cloud, None, (*self.recipe, f"{method}{args}"))
            image.env_vars = dict(self.env_vars)
            if method == "env":
                image.env_vars.update(args[0] if args else kwargs["vars"])
            return image

        return step


class FakeApp:
    """What ``App.lookup`` returns: a deployed app with an id."""

    def __init__(self, name: str, environment: str | None) -> None:
        self.name, self.environment = name, environment
        self.app_id: str = _random_id("ap-")


# ---------------------------------------------------------------------- processes


class FakeStreamReader:
    """``ContainerProcess.stdout`` / ``stderr``: ``async for chunk in r`` and ``await r.read.aio()``."""

    def __init__(
        self, cloud: FakeModalCloud, pipe: asyncio.StreamReader, text: bool, root: Path
    ) -> None:
        self._pipe, self._text, self._root = pipe, text, str(root).encode()
        self.read = AioEntry(
            cloud, "StreamReader.read", modal.io_streams.StreamReader.read, self._read_all
        )

    def _convert(self, data: bytes) -> str | bytes:
        data = data.replace(self._root, b"")  # host paths print as sandbox paths
        return data.decode() if self._text else data

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self._pipe.read(65536):
            yield chunk

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        async def gen() -> AsyncIterator[str | bytes]:
            async for chunk in self._chunks():
                yield self._convert(chunk)

        return gen()

    async def _read_all(self) -> str | bytes:
        return self._convert(b"".join([chunk async for chunk in self._chunks()]))


class FakeContainerProcess:
    """What ``sb.exec`` returns; ``wait`` gives -1 once Modal's exec deadline passes."""

    def __init__(
        self,
        cloud: FakeModalCloud,
        proc: asyncio.subprocess.Process,
        text: bool,
        root: Path,
        timeout: int | None,
    ) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        self._deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        self.stdout = FakeStreamReader(cloud, proc.stdout, text, root)
        self.stderr = FakeStreamReader(cloud, proc.stderr, text, root)
        self.wait = AioEntry(cloud, "ContainerProcess.wait", ContainerProcess.wait, self._wait)
        self.poll = AioEntry(cloud, "ContainerProcess.poll", ContainerProcess.poll, self._poll)

    async def _wait(self) -> int:
        # Not Process.wait(): asyncio's also waits for the pipes to close, so a
        # background child holding them would stall it; Modal's returns at exit.
        loop = asyncio.get_running_loop()
        while (code := self._proc.returncode) is None:
            if self._deadline is not None and loop.time() >= self._deadline:
                _kill_group(self._proc.pid)
                return -1
            await asyncio.sleep(0.01)
        return 128 - code if code < 0 else code  # a signal -N is reported as 128+N

    async def _poll(self) -> int | None:
        code = self._proc.returncode
        return None if code is None else (128 - code if code < 0 else code)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# ---------------------------------------------------------------------- sandboxes


@dataclass
class SandboxState:
    """What Modal keeps for one sandbox; every handle (create, from_id, list) shares it."""

    object_id: str
    app_id: str
    root: Path
    tags: dict[str, str]
    create_kwargs: dict[str, Any]
    image_env: dict[str, str]
    returncode: int | None = None
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)


class FakeFilesystem:
    """``sb.filesystem``: read_bytes, write_bytes, list_files, stat, make_directory, remove."""

    def __init__(self, cloud: FakeModalCloud, sandbox: FakeSandbox) -> None:
        self._cloud, self._sb = cloud, sandbox
        for name in ("read_bytes", "write_bytes", "list_files", "stat", "make_directory", "remove"):
            impl = getattr(self, f"_{name}")
            setattr(
                self,
                name,
                AioEntry(cloud, f"filesystem.{name}", getattr(SandboxFilesystem, name), impl),
            )

    def _host(self, remote_path: str, operation: str) -> Path:
        validate_absolute_remote_path(remote_path, operation)
        if self._sb.returncode is not None:
            # What sandbox_fs_utils.translate_exec_errors turns a finished sandbox into.
            raise exc.NotFoundError(
                "The Sandbox is unavailable. This Sandbox may have already shut down."
            )
        return self._sb._state.root / remote_path.lstrip("/")

    @contextlib.contextmanager
    def _errors(self, remote_path: str) -> Any:
        try:
            yield
        except FileNotFoundError:
            raise exc.SandboxFilesystemNotFoundError(
                f"No such file or directory: {remote_path}"
            ) from None
        except IsADirectoryError:
            raise exc.SandboxFilesystemIsADirectoryError(f"Is a directory: {remote_path}") from None
        except NotADirectoryError:
            raise exc.SandboxFilesystemNotADirectoryError(
                f"Not a directory: {remote_path}"
            ) from None

    def _info(self, host: Path, remote_path: str) -> FileInfo:
        st = host.lstat()
        kind = (
            FileType.SYMLINK
            if host.is_symlink()
            else FileType.DIRECTORY
            if host.is_dir()
            else FileType.FILE
        )
        return FileInfo(
            name=host.name,
            path=remote_path,
            type=kind,
            size=st.st_size,
            mode=st.st_mode,
            permissions=oct(st.st_mode & 0o777),
            owner="root",
            group="root",
            modified_time=st.st_mtime,
            symlink_target=os.readlink(host) if host.is_symlink() else None,
        )

    async def _read_bytes(self, remote_path: str) -> bytes:
        host = self._host(remote_path, "read_bytes")
        with self._errors(remote_path):
            return host.read_bytes()

    async def _write_bytes(self, data: Any, remote_path: str) -> None:
        host = self._host(remote_path, "write_bytes")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("data must be bytes-like")
        with self._errors(remote_path):
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(bytes(data))

    async def _list_files(self, remote_path: str) -> list[FileInfo]:
        host = self._host(remote_path, "list_files")
        with self._errors(remote_path):
            children = sorted(host.iterdir())
        return [self._info(child, f"{remote_path.rstrip('/')}/{child.name}") for child in children]

    async def _stat(self, remote_path: str) -> FileInfo:
        host = self._host(remote_path, "stat")
        with self._errors(remote_path):
            return self._info(host, remote_path)

    async def _make_directory(self, remote_path: str, *, create_parents: bool = True) -> None:
        host = self._host(remote_path, "make_directory")
        with self._errors(remote_path):
            host.mkdir(parents=create_parents, exist_ok=create_parents)

    async def _remove(self, remote_path: str, *, recursive: bool = False) -> None:
        host = self._host(remote_path, "remove")
        with self._errors(remote_path):
            if host.is_dir() and not host.is_symlink():
                shutil.rmtree(host) if recursive else host.rmdir()
            else:
                host.unlink()


@dataclass(frozen=True)
class FakeTunnel:
    """What ``Sandbox.tunnels`` maps a port to (``modal._tunnel.Tunnel``: its ``url``)."""

    url: str


class FakeSandbox:
    """A ``modal.Sandbox`` handle."""

    def __init__(self, cloud: FakeModalCloud, state: SandboxState) -> None:
        self._cloud, self._state = cloud, state
        real = modal.Sandbox
        for name in (
            "exec",
            "terminate",
            "poll",
            "snapshot_filesystem",
            "get_tags",
            "set_tags",
            "tunnels",
        ):
            setattr(
                self,
                name,
                AioEntry(cloud, f"Sandbox.{name}", getattr(real, name), getattr(self, f"_{name}")),
            )
        self.filesystem = FakeFilesystem(cloud, self)

    @property
    def object_id(self) -> str:
        return self._state.object_id

    @property
    def returncode(self) -> int | None:
        return self._state.returncode

    def _require_running(self) -> None:
        if self._state.returncode is not None:
            raise exc.ConflictError(f"Sandbox {self.object_id} has already finished")

    def _map_arg(self, arg: str) -> str:
        if arg in self._cloud.repos:
            return str(self._cloud.repos[arg])
        if arg.startswith("https://"):
            return str(self._state.root / "no-such-remote")  # offline: an unknown remote fails fast
        return self._map_path(arg)

    def _map_path(self, value: str) -> str:
        """A sandbox path (argv item or whole env value) as the host path that holds it."""
        if any(value == p or value.startswith(p + "/") for p in MAPPED_PREFIXES):
            return str(self._state.root / value.lstrip("/"))
        return value

    async def _exec(
        self,
        *args: str,
        timeout: int | None = None,  # noqa: ASYNC109 - the SDK's parameter
        workdir: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Any = None,
        text: bool = True,
        **_: Any,
    ) -> FakeContainerProcess:
        # The SDK's local checks (sandbox/_common.py exec_via_tcr), then the server's.
        if workdir is not None and not workdir.startswith("/"):
            raise exc.InvalidError(f"workdir must be an absolute path, got: {workdir}")
        if not all(isinstance(a, str) for a in args):
            raise exc.InvalidError("All entrypoint arguments must be strings")
        if sum(len(a) for a in args) > ARG_MAX_BYTES:
            raise exc.InvalidError(
                "Total length of CMD arguments cannot exceed 65536 bytes (ARG_MAX)"
            )
        if timeout is not None and not isinstance(timeout, int):
            raise TypeError(f"exec timeout must be an int, got {timeout!r}")
        for key in env or {}:
            if not _ENV_KEY.match(key):
                raise exc.InvalidError(f"Invalid environment variable name: {key!r}")
        assert not secrets, "the provider must not pass Modal secrets to exec"
        self._require_running()
        if self._cloud.exec_error is not None:
            raise self._cloud.exec_error
        cwd = self._state.root / (workdir or "/").lstrip("/")
        # Programs the image installed (npm -g) come first, as /usr/local/bin does on Modal.
        path = f"{self._state.root / 'usr/local/bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        process_env = {
            "PATH": path,
            "HOME": str(self._state.root / "root"),
            "LANG": "C.UTF-8",
            "FAKE_MODAL_SANDBOX": self.object_id,  # inherited by every descendant: see stop()
            **self._state.image_env,
            # A value that is a sandbox path (HOME=/workspace/...) maps like an argv item.
            **{k: self._map_path(v) for k, v in (env or {}).items() if v is not None},
        }
        proc = await asyncio.create_subprocess_exec(
            *[self._map_arg(a) for a in args],
            cwd=cwd,
            env=process_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._state.processes.append(proc)
        await asyncio.sleep(
            self._cloud.exec_reply_delay
        )  # the command runs before the reply arrives
        return FakeContainerProcess(self._cloud, proc, text, self._state.root, timeout)

    async def _tunnels(self, timeout: int = 50) -> dict[int, Any]:  # noqa: ASYNC109 - the SDK's
        """Modal's tunnels are TLS endpoints on the internet; here a sandbox's
        processes run on this host, so a port's tunnel is the loopback port."""
        self._require_running()
        ports = self._state.create_kwargs.get("encrypted_ports") or []
        return {port: FakeTunnel(f"http://127.0.0.1:{port}") for port in ports}

    async def _terminate(self, *, wait: bool = False) -> int | None:
        self._cloud.stop(self.object_id, 137)
        return self._state.returncode if wait else None

    async def _poll(self) -> int | None:
        return self._state.returncode

    async def _snapshot_filesystem(
        self,
        timeout: int = 55,  # noqa: ASYNC109 - the SDK's parameter
        *,
        ttl: int | None = None,
    ) -> FakeImage:
        self._require_running()
        if self._cloud.snapshot_error is not None:
            raise self._cloud.snapshot_error
        image_id = _random_id("im-")
        # What still ran when the filesystem was copied (a service writing its files).
        self._cloud.running_at_snapshot[image_id] = self._cloud.processes_of(self.object_id)
        shutil.copytree(self._state.root, self._cloud.base / "images" / image_id, symlinks=True)
        self._cloud.images[image_id] = self._state.image_env
        self._cloud.image_sources[image_id] = self._state.root
        return FakeImage(self._cloud, image_id)

    async def _get_tags(self) -> dict[str, str]:
        return dict(self._state.tags)

    async def _set_tags(self, tags: dict[str, str], *, client: Any = None) -> None:
        self._state.tags = dict(tags)


# ---------------------------------------------------------------------- the cloud and the module


class FakeModalCloud:
    """Modal's state for one test, plus knobs to make it fail."""

    def __init__(self, base: Path) -> None:
        self.base = base
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "sandboxes").mkdir(parents=True, exist_ok=True)
        self.calls: list[Call] = []
        self.apps: dict[tuple[str, str | None], FakeApp] = {}
        self.sandboxes: dict[str, SandboxState] = {}
        self.images: dict[str, dict[str, str]] = {}  # snapshot id -> image env
        self.repos: dict[str, Path] = {}  # clone URL -> local repository
        self.lookup_error: BaseException | None = None
        self.create_error: BaseException | None = None
        self.exec_error: BaseException | None = None
        self.exec_reply_delay = 0.0
        self.snapshot_error: BaseException | None = None
        # npm packages an image recipe may install (`npm install -g name@version`):
        # name -> (version, command, host program). The fake links the host's program
        # into the sandbox's /usr/local/bin as the command; a recipe asking another
        # version fails to build.
        self.npm_packages: dict[str, tuple[str, str, Path]] = {}
        self.running_at_snapshot: dict[str, list[str]] = {}  # image id -> command lines
        self.image_sources: dict[str, Path] = {}  # snapshot id -> root of the sandbox it copied

    # what tests look at
    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def running(self) -> list[SandboxState]:
        return [s for s in self.sandboxes.values() if s.returncode is None]

    def stop(self, sandbox_id: str, returncode: int) -> None:
        """End a sandbox (137: terminated, 124: Modal's timeout) and kill what runs in it."""
        state = self.sandboxes[sandbox_id]
        if state.returncode is None:
            state.returncode = returncode
        for pid in self._pids_of(sandbox_id):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _pids_of(sandbox_id: str) -> list[int]:
        """Every live process of the sandbox, background children in their own groups included
        (a zombie's environ reads empty: it is not counted)."""
        marker = f"FAKE_MODAL_SANDBOX={sandbox_id}".encode()
        found = []
        for proc_dir in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if marker in (proc_dir / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc_dir.name))
        return found

    def processes_of(self, sandbox_id: str) -> list[str]:
        """The command lines of the sandbox's live processes."""
        lines = []
        for pid in self._pids_of(sandbox_id):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
                lines.append(" ".join(a.decode("utf-8", "replace") for a in argv))
        return lines

    def expire(self, sandbox_id: str) -> None:
        """The sandbox reached its ``timeout`` on Modal's side."""
        self.stop(sandbox_id, 124)

    def delete_image(self, image_id: str) -> None:
        """The snapshot expired (its TTL passed)."""
        self.images.pop(image_id, None)
        shutil.rmtree(self.base / "images" / image_id, ignore_errors=True)

    def all_bytes(self) -> bytes:
        """Every byte stored in every sandbox and snapshot (to look for leaked secrets)."""
        blobs = []
        for path in sorted(self.base.rglob("*")):
            if path.is_file() and not path.is_symlink():
                blobs.append(path.read_bytes())
        return b"\n".join(blobs)

    # the SDK
    async def lookup(
        self,
        name: str,
        *,
        client: Any = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
    ) -> FakeApp:
        if self.lookup_error is not None:
            raise self.lookup_error
        key = (name, environment_name)
        if key not in self.apps:
            if not create_if_missing:
                raise exc.NotFoundError(f"Lookup failed for App '{name}'")
            self.apps[key] = FakeApp(name, environment_name)
        return self.apps[key]

    async def create(
        self,
        *args: str,
        app: FakeApp | None = None,
        image: FakeImage | None = None,
        tags: dict[str, str] | None = None,
        timeout: int | None = 300,  # noqa: ASYNC109 - the SDK's parameter
        workdir: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Any = None,
        **kwargs: Any,
    ) -> FakeSandbox:
        # The SDK's local checks (sandbox/_common.py), in its order.
        if timeout is None:
            raise exc.InvalidError(
                "`timeout=None` is only supported for experimental persistent Sandboxes."
            )
        if workdir is not None and not workdir.startswith("/"):
            raise exc.InvalidError(f"workdir must be an absolute path, got: {workdir}")
        if app is None:
            raise exc.InvalidError(
                "Sandboxes require an App when created outside of a Modal container."
            )
        if app.app_id is None:
            raise ValueError("App has not been initialized yet.")
        for name in ("timeout", "idle_timeout", "memory"):
            value = {"timeout": timeout, **kwargs}.get(name)
            if value is not None and not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {value!r}")
        check_tag_dict(tags or {})
        assert not secrets, "the provider must not pass Modal secrets to a sandbox"
        assert not env, "the sandbox environment must stay minimal"
        if self.create_error is not None:
            raise self.create_error
        sandbox_id = _random_id("sb-")
        root = self.base / "sandboxes" / sandbox_id
        image_env: dict[str, str] = {}
        if image is not None and image.object_id is not None:  # a snapshot, restored by id
            if image.object_id not in self.images:
                raise exc.NotFoundError(f"Image {image.object_id} not found")
            root = self._restore_root(image.object_id, root)
            shutil.copytree(self.base / "images" / image.object_id, root, symlinks=True)
            image_env = self.images[image.object_id]
        else:
            for directory in ("workspace", "tmp", "var/lib/agent-tui", "root", "usr/local/bin"):
                (root / directory).mkdir(parents=True)
            image_env = dict(image.env_vars) if image is not None else {}
            self._install_npm_packages(image.recipe if image is not None else (), root)
        state = SandboxState(
            sandbox_id,
            app.app_id,
            root,
            dict(tags or {}),
            {"workdir": workdir, **kwargs},
            image_env,
        )
        self.sandboxes[sandbox_id] = state
        return FakeSandbox(self, state)

    def _restore_root(self, image_id: str, fresh: Path) -> Path:
        """Where a sandbox restored from ``image_id`` keeps its files.

        On Modal every sandbox sees its files at the same absolute paths, and
        programs that record their working directory rely on it (OpenCode keys
        its sessions by it). Here paths are host paths, so a restored sandbox
        takes over the host directory of the sandbox its snapshot came from once
        that one has finished (as the local provider keeps one directory per
        session); while it still runs, the restore gets a path of its own.
        """
        source = self.image_sources.get(image_id)
        if source is None or any(
            state.root == source and state.returncode is None for state in self.sandboxes.values()
        ):
            return fresh
        shutil.rmtree(source, ignore_errors=True)
        return source

    def _install_npm_packages(self, recipe: tuple[str, ...], root: Path) -> None:
        """What the recipe's `npm install -g name@version` steps put on the sandbox's PATH."""
        for step in recipe:
            for name, version in _NPM_INSTALL.findall(step):
                if name not in self.npm_packages:
                    continue  # not available offline: the program is simply missing
                have, command, program = self.npm_packages[name]
                if version != have:
                    raise exc.ImageBuildError(
                        f"npm: {name}@{version} requested, the fake can install {name}@{have}",
                        _random_id("im-"),
                    )
                (root / "usr/local/bin" / command).symlink_to(program)

    async def from_id(self, sandbox_id: str, client: Any = None) -> FakeSandbox:
        if sandbox_id not in self.sandboxes:
            raise exc.NotFoundError(f"Sandbox {sandbox_id} not found")
        return FakeSandbox(self, self.sandboxes[sandbox_id])

    async def list(
        self, *, app_id: str | None = None, tags: dict[str, str] | None = None, client: Any = None
    ) -> AsyncIterator[FakeSandbox]:
        assert app_id, "Sandbox.list without app_id is deprecated (and scans the whole environment)"
        for state in list(self.sandboxes.values()):
            if (
                state.app_id == app_id
                and state.returncode is None
                and (tags or {}).items() <= state.tags.items()
            ):
                yield FakeSandbox(self, state)

    def image_from_id(self, image_id: str, client: Any = None) -> FakeImage:
        return FakeImage(self, image_id)  # lazy, like the real one: create resolves it

    def debian_slim(
        self, python_version: str | None = None, force_build: bool = False
    ) -> FakeImage:
        return FakeImage(self, None, (f"debian_slim({python_version})",))

    async def shutdown(self) -> None:
        """Kill every process a test left running and reap them inside the test's loop."""
        for sandbox_id in list(self.sandboxes):
            self.stop(sandbox_id, 137)
        for state in self.sandboxes.values():
            for proc in state.processes:
                assert proc.stdout is not None and proc.stderr is not None
                # Drain to EOF: wait() alone returns at exit, leaving the pipes open.
                with contextlib.suppress(TimeoutError, RuntimeError):
                    await asyncio.wait_for(
                        asyncio.gather(proc.stdout.read(), proc.stderr.read(), proc.wait()), 5
                    )


class FakeModal:
    """Stands in for the ``modal`` module: ``App``, ``Sandbox``, ``Image``, ``exception``."""

    def __init__(self, cloud: FakeModalCloud) -> None:
        self.cloud = cloud
        self.exception = (
            modal.exception
        )  # the real classes: the provider's mapping is tested against them

        class App:
            lookup = AioEntry(cloud, "App.lookup", modal.App.lookup, cloud.lookup)

        class Sandbox:
            create = AioEntry(cloud, "Sandbox.create", modal.Sandbox.create, cloud.create)
            from_id = AioEntry(cloud, "Sandbox.from_id", modal.Sandbox.from_id, cloud.from_id)
            list = AioEntry(cloud, "Sandbox.list", modal.Sandbox.list, cloud.list)

        class Image:
            from_id = SyncEntry(cloud, "Image.from_id", modal.Image.from_id, cloud.image_from_id)
            debian_slim = SyncEntry(
                cloud, "Image.debian_slim", modal.Image.debian_slim, cloud.debian_slim
            )

        self.App, self.Sandbox, self.Image = App, Sandbox, Image
