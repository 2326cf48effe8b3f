"""Backups of a group's data: one ``.tar.gz`` holding a manifest and the files, each with its
SHA-256. What a substrate puts in is a consistent copy taken while the group runs — a MAD's
SQLite database through SQLite's online backup API, Redis's data as an RDB snapshot
(``BGSAVE``) — and what it takes out is checked in full before anything is changed: an
archive that cannot be read to its end, that is not a madgroup backup, whose files do not
match their checksums or whose databases fail SQLite's integrity check is refused.

Only the standard library, so the same module runs in a MAD's image
(``python -m madgroup.backup``, docs/packaging.md).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import shutil
import sqlite3
import sys
import tarfile
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from madgroup.errors import MadGroupError

KIND = "madgroup-backup"
FORMAT = 1
MANIFEST = "manifest.json"
MAX_MEMBER_BYTES = 8 * 1024**3
"""No file in a backup is bigger than this (an archive claiming more is refused)."""


class BackupError(MadGroupError):
    """A backup cannot be taken, or an archive is refused; the message is one line."""


def stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def sqlite_snapshot(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite database ``source`` while its owner writes to it
    (the online backup API copies every page in one step, under one read transaction)."""
    if not source.exists():
        raise BackupError(f"{source} does not exist")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {source}: {exc}") from None
    finally:
        dst.close()
        src.close()


def sqlite_problem(path: Path) -> str | None:
    """Why ``path`` is not a sound SQLite database, or None."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found = conn.execute("PRAGMA integrity_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None if found and found[0] == "ok" else f"integrity check: {found}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Archive:
    """A backup being written: files under names like ``fiedler/fiedler_state.db``."""

    substrate: str
    files: dict[str, Path] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format": FORMAT,
            "substrate": self.substrate,
            "created_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "files": {
                name: {"sha256": _sha256(path), "bytes": path.stat().st_size}
                for name, path in sorted(self.files.items())
            },
            **self.details,
        }

    def write(self, path: Path) -> dict[str, Any]:
        manifest = self.manifest()
        root = path.name.removesuffix(".tar.gz")
        data = json.dumps(manifest, indent=2).encode()
        partial = path.with_name(path.name + ".partial")
        with tarfile.open(partial, "w:gz") as archive:
            info = tarfile.TarInfo(f"{root}/{MANIFEST}")
            info.size, info.mode = len(data), 0o600
            archive.addfile(info, io.BytesIO(data))
            for name, source in sorted(self.files.items()):
                archive.add(source, arcname=f"{root}/{name}", recursive=False)
        partial.chmod(0o600)
        os.replace(partial, path)
        return manifest


@dataclass
class Opened:
    """A backup read in full and checked: its manifest and its files, in ``workdir``."""

    manifest: dict[str, Any]
    files: dict[str, Path]


def open_checked(path: Path, workdir: Path, components: Collection[str] | None = None) -> Opened:
    """Read ``path`` to its end into ``workdir`` and check everything; BackupError (one
    line) when it is unreadable, foreign, incomplete or corrupt, or (with ``components``)
    holds data of something that is not one of them."""
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = archive.getmembers()  # reads to the end: a truncated archive fails here
            read = {m.name: m for m in members}
            manifest = _manifest(path, archive, members)
            files = _extract(path, archive, read, manifest, workdir)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read to its end ({exc}): not restored") from None
    if components is not None:
        unknown = sorted({name.split("/", 1)[0] for name in files} - set(components))
        if unknown:
            raise BackupError(f"{path} holds data of {unknown[0]!r}, not a component")
    return Opened(manifest, files)


def _manifest(path: Path, archive: tarfile.TarFile, members: list[tarfile.TarInfo]) -> Any:
    found = [m for m in members if PurePosixPath(m.name).name == MANIFEST and m.isfile()]
    if len(found) != 1:
        raise BackupError(f"{path} is not a madgroup backup (no {MANIFEST})")
    handle = archive.extractfile(found[0])
    assert handle is not None
    try:
        manifest = json.loads(handle.read(1 << 20))
    except ValueError:
        raise BackupError(f"{path} is not a madgroup backup ({MANIFEST} is not JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BackupError(f"{path} is not a madgroup backup (kind {manifest.get('kind')!r})")
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"{path} is a madgroup backup of format {manifest.get('format')!r}; "
            f"this version reads format {FORMAT}"
        )
    if not isinstance(manifest.get("files"), dict):
        raise BackupError(f"{path}: its manifest lists no files")
    return manifest


def _extract(
    path: Path,
    archive: tarfile.TarFile,
    read: Mapping[str, tarfile.TarInfo],
    manifest: Mapping[str, Any],
    workdir: Path,
) -> dict[str, Path]:
    root = next(iter(read)).split("/", 1)[0]
    listed: Mapping[str, Any] = manifest["files"]
    expected = {f"{root}/{MANIFEST}", *(f"{root}/{name}" for name in listed)}
    if set(read) != expected:
        extra = sorted(set(read) - expected) or sorted(expected - set(read))
        raise BackupError(f"{path} does not hold exactly the files its manifest lists ({extra[0]})")
    files: dict[str, Path] = {}
    for name, entry in listed.items():
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts or len(parts) != 2:
            raise BackupError(f"{path}: its manifest names an unsafe path {name!r}")
        member = read[f"{root}/{name}"]
        if not member.isfile() or member.size > MAX_MEMBER_BYTES:
            raise BackupError(f"{path}: {name} is not a regular file of a sane size")
        target = workdir / parts[0] / parts[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = archive.extractfile(member)
        assert handle is not None
        with target.open("wb") as out:
            shutil.copyfileobj(handle, out, 1 << 20)
        if _sha256(target) != entry.get("sha256"):
            raise BackupError(f"{path}: {name} does not match its checksum: not restored")
        if name.endswith(".db") and (problem := sqlite_problem(target)):
            raise BackupError(f"{path}: {name} is not a sound database ({problem})")
        files[name] = target
    return files


def place(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` in one rename (an SQLite database's stale ``-wal`` and
    ``-shm`` go first: they belong to the file being replaced)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        stale.unlink(missing_ok=True)
    staged = target.with_name(target.name + ".restoring")
    with source.open("rb") as src, staged.open("wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(staged, target)


def redis_aof_from_rdb(rdb: Path, data_dir: Path, appendfilename: str, appenddirname: str) -> None:
    """Redis's data directory holding ``rdb`` as the base of a fresh append-only file (an
    AOF-enabled Redis ignores a bare ``dump.rdb`` when it finds no AOF)."""
    aof_dir = data_dir / appenddirname
    staged = data_dir / (appenddirname + ".restoring")
    if staged.exists():
        for leftover in staged.iterdir():
            leftover.unlink()
        staged.rmdir()
    staged.mkdir(parents=True)
    base = f"{appendfilename}.1.base.rdb"
    place(rdb, staged / base)
    (staged / f"{appendfilename}.manifest").write_text(f"file {base} seq 1 type b\n")
    if aof_dir.exists():
        for old in aof_dir.iterdir():
            old.unlink()
        aof_dir.rmdir()
    os.replace(staged, aof_dir)
    (data_dir / "dump.rdb").unlink(missing_ok=True)


NOT_INCLUDED = "not_included"
"""The manifest's record of data the group keeps outside itself (a component's database),
which the archive holds none of: component -> one line saying where it is and what backs it
up."""


def not_included(archive: Archive, notes: Mapping[str, str]) -> None:
    """Record in ``archive``'s manifest the data it does not hold (``notes``: component ->
    line)."""
    if notes:
        archive.details[NOT_INCLUDED] = dict(sorted(notes.items()))


def written(output: Path, manifest: Mapping[str, Any]) -> str:
    """What ``madgroup backup`` prints: the files, then one line per component whose data
    the archive does not hold."""
    files = ", ".join(f"{n} ({e['bytes']} bytes)" for n, e in manifest["files"].items())
    notes = [f"\nnot included: {line}" for line in (manifest.get(NOT_INCLUDED) or {}).values()]
    return f"wrote {output}: {files}" + "".join(notes)


def restored(archive: object, manifest: Mapping[str, Any], start: str) -> str:
    """What ``madgroup restore`` prints; ``start``: how this substrate starts the group."""
    return (
        f"restored {archive} (taken {manifest.get('created_at')}): "
        f"{', '.join(manifest['files'])}; start the group with: {start}"
    )


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups in ``directory``; return what went."""
    found = sorted(directory.glob("madgroup-backup-*.tar.gz"))
    gone = found[: max(0, len(found) - keep)]
    for old in gone:
        old.unlink()
    return gone


def restore_files(opened: Opened, targets: Mapping[str, Path], redis: Mapping[str, str]) -> None:
    """Put each file of a checked backup into its component's data directory; Redis's
    snapshot (``dump.rdb``) as the base of a fresh append-only file."""
    for name, source in opened.files.items():
        component, filename = name.split("/", 1)
        if component not in targets:
            raise BackupError(f"no data directory given for {component!r} (--into {component}=DIR)")
        if filename == "dump.rdb":
            redis_aof_from_rdb(
                source,
                targets[component],
                redis.get("appendfilename", "appendonly.aof"),
                redis.get("appenddirname", "appendonlydir"),
            )
        else:
            place(source, targets[component] / filename)


def _pairs(values: list[str], what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise BackupError(f"{what} takes NAME=PATH, not {value!r}")
        found[name] = Path(path)
    return found


def main(argv: list[str] | None = None) -> int:
    """What runs where ``madgroup`` is not the runner (compose containers, the operator's
    backup CronJob and restore Job): ``snapshot``, ``archive``, ``restore``."""
    parser = argparse.ArgumentParser(prog="python -m madgroup.backup")
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot", help="copy a live SQLite database consistently")
    snap.add_argument("source", type=Path)
    snap.add_argument("target", type=Path)
    arch = sub.add_parser("archive", help="write a backup archive from files")
    arch.add_argument(
        "--sqlite",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a live SQLite database (copied with the online backup API)",
    )
    arch.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a file taken as it is (Redis's dump.rdb from redis-cli --rdb)",
    )
    arch.add_argument(
        "--not-included",
        action="append",
        default=[],
        metavar="NAME=LINE",
        help="a component whose data is kept outside the group, and where (in the manifest)",
    )
    arch.add_argument("--output-dir", type=Path, required=True)
    arch.add_argument("--keep", type=int, default=0, help="keep only the newest N backups")
    arch.add_argument("--substrate", default="kubernetes")
    rest = sub.add_parser("restore", help="check an archive, then put its files in place")
    rest.add_argument("archive", type=Path)
    rest.add_argument(
        "--into",
        action="append",
        default=[],
        metavar="COMPONENT=DIR",
        help="each component's data directory",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "snapshot":
            with tempfile.TemporaryDirectory(dir=args.target.parent) as tmp:
                staged = Path(tmp) / args.target.name
                sqlite_snapshot(args.source, staged)
                os.replace(staged, args.target)
            print(f"wrote {args.target}")
        elif args.command == "archive":
            _archive(args)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                opened = open_checked(args.archive, Path(tmp))
                restore_files(
                    opened, _pairs(args.into, "--into"), opened.manifest.get("redis") or {}
                )
            print(f"restored {args.archive}: {', '.join(opened.files)}")
    except BackupError as exc:
        print(f"madgroup.backup: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _archive(args: argparse.Namespace) -> None:
    args.output_dir.mkdir(parents=True, exist_ok=True)
    archive = Archive(args.substrate)
    with tempfile.TemporaryDirectory(dir=args.output_dir) as tmp:
        for name, source in _pairs(args.sqlite, "--sqlite").items():
            copy = Path(tmp) / name.replace("/", "_")
            sqlite_snapshot(source, copy)
            archive.files[name] = copy
        for name, source in _pairs(args.file, "--file").items():
            if not source.is_file():
                raise BackupError(f"{source} does not exist")
            archive.files[name] = source
        notes = {}
        for value in args.not_included:
            name, sep, line = value.partition("=")
            if not sep or not name or not line:
                raise BackupError(f"--not-included takes NAME=LINE, not {value!r}")
            notes[name] = line
        not_included(archive, notes)
        for name in archive.files:
            parts = PurePosixPath(name).parts
            if len(parts) != 2 or ".." in parts:
                raise BackupError(f"a name is COMPONENT/FILE, not {name!r}")
        output = args.output_dir / f"madgroup-backup-{stamp()}.tar.gz"
        archive.write(output)
    gone = prune(args.output_dir, args.keep) if args.keep > 0 else []
    print(f"wrote {output}" + (f"; removed {len(gone)} older" if gone else ""))
    for line in notes.values():
        print(f"not included: {line}")


if __name__ == "__main__":
    sys.exit(main())
