"""Where the local provider keeps workspaces and snapshots on disk.

Layout under the root (``<data dir>/sandboxes``)::

    live/<session id>/workspace       the running sandbox's files
    live/<session id>/sandbox.json    its sandbox id (and the snapshot it came from)
    snapshots/<session id>/<snap id>  a paused sandbox's files

Pausing renames the workspace into ``snapshots/`` and resuming renames it back:
both are instant, and the workspace keeps its path, so absolute paths written
into it (virtualenvs, build caches) survive a pause. Directory names carry the
session id, which lets a sweep find what belongs to no session.

Every method blocks: the provider calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from sandbox.base import SandboxError, SnapshotLost

__all__ = ["SAFE_ID", "WorkspaceLayout"]

# Ids become directory names: nothing that could climb, hide or separate.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_META = "sandbox.json"


class WorkspaceLayout:
    """The live workspaces and snapshots under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.live_root = root / "live"
        self.snapshot_root = root / "snapshots"

    def prepare(self) -> None:
        """Create the root, readable by the server's user only."""
        for folder in (self.root, self.live_root, self.snapshot_root):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def session_dir(self, session_id: str) -> Path:
        return self.live_root / session_id

    def workspace(self, session_id: str) -> Path:
        return self.live_root / session_id / "workspace"

    def snapshot(self, session_id: str, snapshot_id: str) -> Path:
        return self.snapshot_root / session_id / snapshot_id

    def make_workspace(self, session_id: str, sandbox_id: str) -> Path:
        """A new, empty workspace for the session."""
        live = self.session_dir(session_id)
        if live.exists():
            # Left by a create that never finished; a new session has nothing to keep.
            shutil.rmtree(live)
        live.mkdir()
        workspace = self.workspace(session_id)
        workspace.mkdir()
        self._write_meta(session_id, {"sandboxId": sandbox_id})
        return workspace

    def move_to_snapshot(self, session_id: str, snapshot_id: str) -> None:
        """Rename the live workspace into a snapshot (instant, same filesystem)."""
        target = self.snapshot(session_id, snapshot_id)
        target.parent.mkdir(exist_ok=True)
        os.rename(self.workspace(session_id), target)
        shutil.rmtree(self.session_dir(session_id), ignore_errors=True)

    def restore_snapshot(self, session_id: str, snapshot_id: str, sandbox_id: str) -> Path:
        """Rename a snapshot back into the live workspace, recorded as ``sandbox_id``.

        If an earlier restore of the same snapshot already did (and its caller
        never recorded it, say the server crashed), that workspace is taken.
        Raises ``SnapshotLost`` otherwise when the snapshot is gone.
        """
        snapshot = self.snapshot(session_id, snapshot_id)
        workspace = self.workspace(session_id)
        if snapshot.is_dir():
            if workspace.exists():
                raise SandboxError(
                    "The session already has a live workspace", details={"sessionId": session_id}
                )
            workspace.parent.mkdir(exist_ok=True)
            os.rename(snapshot, workspace)
            with contextlib.suppress(OSError):
                snapshot.parent.rmdir()  # only when no other snapshot is left
        elif self.live_meta(session_id).get("restoredFrom") != snapshot_id:
            raise SnapshotLost(details={"snapshotId": snapshot_id})
        self._write_meta(session_id, {"sandboxId": sandbox_id, "restoredFrom": snapshot_id})
        return workspace

    def delete_session(self, session_id: str) -> None:
        """Remove the session's live workspace and all its snapshots."""
        for folder in (self.session_dir(session_id), self.snapshot_root / session_id):
            shutil.rmtree(folder, ignore_errors=True)

    def live_meta(self, session_id: str) -> dict[str, str]:
        """The live sandbox's record; empty when there is no live workspace."""
        if not self.workspace(session_id).is_dir():
            return {}
        try:
            data = json.loads((self.session_dir(session_id) / _META).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def sessions_not_in(self, session_ids: set[str]) -> list[str]:
        """Sessions with a workspace or a snapshot here that are not in ``session_ids``."""
        found: set[str] = set()
        for folder in (self.live_root, self.snapshot_root):
            for entry in os.scandir(folder):
                if SAFE_ID.match(entry.name) and entry.name not in session_ids:
                    found.add(entry.name)
        return sorted(found)

    def _write_meta(self, session_id: str, meta: dict[str, str]) -> None:
        path = self.session_dir(session_id) / _META
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path)  # a crash never leaves half a record
