"""Schema migrations: numbered SQL files shipped inside the ``database`` package.

``database/migrations/<dialect>/NNN_name.sql`` are applied in version order; the
file's stem (``001_init``) is its version. Both dialect directories hold the same
versions. Each store records what ran in ``schema_migrations(version, checksum,
applied_at)`` and runs the pending files under its own lock; this module only
loads the files and decides what is pending.

The files are read with ``importlib.resources`` so that an installed wheel (or a
zipped one) can migrate without a source checkout.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

Dialect = Literal["postgres", "sqlite"]

_FILE_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """The migration files or the database's record of them are inconsistent."""


@dataclass(frozen=True)
class Migration:
    """One migration file: its version (the file stem), text and SHA-256 checksum."""

    version: str
    sql: str
    checksum: str


@cache
def load_migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """The migrations of ``dialect`` in version order.

    Raises ``MigrationError`` for a misnamed ``.sql`` file or two files with the
    same number: either would make the order ambiguous.
    """
    directory = resources.files("database") / "migrations" / dialect
    found: dict[int, Migration] = {}
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(
                f"migration file {dialect}/{entry.name} is not named NNN_name.sql "
                "(lowercase letters, digits and underscores)"
            )
        number = int(match.group(1))
        if number in found:
            raise MigrationError(
                f"migrations {found[number].version} and {entry.name} share the number {number}"
            )
        # Line endings normalised: a checkout with CRLF endings (git autocrlf) is
        # the same migration, not an edited one.
        data = entry.read_bytes().replace(b"\r\n", b"\n")
        found[number] = Migration(
            version=entry.name.removesuffix(".sql"),
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )
    return tuple(found[number] for number in sorted(found))


def pending_migrations(
    migrations: tuple[Migration, ...], applied: Mapping[str, str]
) -> list[Migration]:
    """The migrations not yet in ``applied`` (version -> checksum), in order.

    Raises ``MigrationError`` when a file was edited after it was applied: the
    database no longer matches what the file says, and re-running it is unsafe.
    Versions applied but unknown to this code are ignored on purpose, so that the
    previous release keeps running while a newer one rolls out.
    """
    pending = []
    for migration in migrations:
        checksum = applied.get(migration.version)
        if checksum is None:
            pending.append(migration)
        elif checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.version} was edited after it was applied "
                f"(checksum {migration.checksum[:12]}..., recorded {checksum[:12]}...); "
                "add a new migration instead of editing an applied one"
            )
    return pending
