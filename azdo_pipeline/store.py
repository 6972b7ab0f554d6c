"""Parquet layout, snapshots written aside, one atomic switch of `latest`, clean-up and retention.

Layout under the data directory (Hive-style, so DuckDB, Polars, pandas and Spark read many
organizations and snapshots at once):

    {data_dir}/latest -> _published/{generation}                         symlink, replaced by one rename
    {data_dir}/latest/{table}/org={org}/{table}.parquet                  (through it) the latest tables
    {data_dir}/latest/_published.json                                    which snapshot each table is from
    {data_dir}/{table}/org={org}/snapshot={snapshot}/{table}.parquet     committed snapshots (history)
    {data_dir}/_snapshots/org={org}/{snapshot}.json                      manifest of a committed snapshot
    {data_dir}/_staging/org={org}/{snapshot}/                            a run's snapshot while written
    {data_dir}/_rejected/org={org}/{snapshot}/                           failed reconciliation (+ REJECTED.json)

How a run writes a snapshot (the only way to write one):

    with store.begin(org, snapshot, kind="raw") as draft:   # first cleans what dead runs of org left
        with draft.writer("users", schema) as w: ...          # or draft.write_table / draft.link
        problems = reconcile(draft.read("users"), ...)        # staged tables are readable
        if problems:
            draft.reject(problems)    # moved to _rejected/ with the reasons; never published
        else:
            draft.commit(meta)        # history + manifest, then `latest` switches in one step

Leaving the block without commit or reject (an exception) deletes the draft. A run killed at any
moment leaves `latest` on one whole generation (the old or the new one); the next `begin` of that
organization removes the dead run's draft and rolls back a commit it did not finish, and the next
publish removes generations a dead publish left half-built.

`latest` is a symbolic link to a generation folder of hard links (a copy where links are not
possible) to committed snapshot files: every organization's tables, as published. A publish builds
the next generation beside it and replaces the link with one rename(2), which POSIX makes atomic, so
a reader resolving `latest` gets one generation or the other, never a mix. A reader that reads
several tables resolves it once (`os.path.realpath(data_dir / "latest")`, see docs/queries.md).
Generations that stopped being `latest` are deleted after `reader_grace_s`, so a reader holding an
old one keeps its files meanwhile. Why a link and what replaces it on object storage:
docs/operations.md ("How `latest` switches").
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .remote import Mirror

BATCH_ROWS = 8192  # rows buffered before a record batch is written (bounds memory)
LATEST = "latest"
PUBLISHED = "_published"
PUBLISHED_JSON = "_published.json"
STAGING = "_staging"
REJECTED = "_rejected"
MANIFESTS = "_snapshots"
COMMIT_JOURNAL = "COMMIT.json"
REJECTED_JSON = "REJECTED.json"
_RESERVED = {LATEST, PUBLISHED, STAGING, REJECTED, MANIFESTS}


def _safe_part(value: str, what: str) -> str:
    if not value or "/" in value or "\\" in value or value in (".", "..") or value.startswith("."):
        raise ValueError(f"invalid {what} {value!r}: it must be a non-empty name without slashes or a leading dot")
    return value


def new_snapshot_id(now: datetime | None = None, run_id: str | None = None) -> str:
    ts = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{ts}-{(run_id or uuid.uuid4().hex)[:8]}"


def _snapshot_time(snapshot: str) -> datetime | None:
    try:
        return datetime.strptime(snapshot[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class Retention:
    """Which committed (and rejected) snapshots of an organization are kept: a snapshot is kept when
    any set rule keeps it; with neither set every snapshot is kept. The published one always is."""

    keep_last: int | None = None  # the newest N
    keep_days: float | None = None  # younger than N days

    def keeps(self, newest_first: list[str], now: datetime) -> set[str]:
        if self.keep_last is None and self.keep_days is None:
            return set(newest_first)
        kept = set(newest_first[: self.keep_last or 0])
        if self.keep_days is not None:
            cutoff = now - timedelta(days=self.keep_days)
            kept |= {s for s in newest_first if (t := _snapshot_time(s)) is None or t >= cutoff}
        return kept


@contextmanager
def _flock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive flock(2) on `path`: yields False (without waiting) when `wait` is off and
    another process holds it. The kernel releases it when its holder dies, even by SIGKILL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise
        shutil.copyfile(src, dst)


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Store:
    """The Parquet store of one data directory (see the module docstring for the layout)."""

    data_dir: Path
    retention: Retention = field(default_factory=Retention)
    reader_grace_s: float = 900.0  # how long a generation outlives its replacement (readers holding it)
    # Azure storage the committed snapshots are mirrored to (azdo_pipeline/remote.py); the folder is then
    # its local cache.
    mirror: Mirror | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    # ---- paths ---------------------------------------------------------------------------------

    def snapshot_path(self, table: str, org: str, snapshot: str) -> Path:
        """A committed snapshot's table (history; it exists once the snapshot is committed)."""
        return (self.data_dir / _safe_table(table) / f"org={_safe_part(org, 'organization')}"
                / f"snapshot={_safe_part(snapshot, 'snapshot')}" / f"{table}.parquet")

    def latest_path(self, table: str, org: str) -> Path:
        """The stable path of the published table (through the `latest` link)."""
        org_dir = f"org={_safe_part(org, 'organization')}"
        return self.data_dir / LATEST / _safe_table(table) / org_dir / f"{table}.parquet"

    def manifest_path(self, org: str, snapshot: str) -> Path:
        org_dir = f"org={_safe_part(org, 'organization')}"
        return self.data_dir / MANIFESTS / org_dir / f"{_safe_part(snapshot, 'snapshot')}.json"

    def rejected_path(self, org: str, snapshot: str) -> Path:
        return self.data_dir / REJECTED / f"org={_safe_part(org, 'organization')}" / _safe_part(snapshot, "snapshot")

    def _staging_dir(self, org: str) -> Path:
        return self.data_dir / STAGING / f"org={_safe_part(org, 'organization')}"

    # ---- reading -------------------------------------------------------------------------------

    def latest_root(self) -> Path | None:
        """The published generation `latest` points to now, resolved (read several tables of one
        publish from it), or None before the first publish."""
        link = self.data_dir / LATEST
        if not link.exists():
            return None
        return Path(os.path.realpath(link))

    def published(self) -> dict[str, Any]:
        """`latest/_published.json`: {"generation", "published_at", "tables": {table: {org: snapshot}},
        "orgs": {org: {kind: snapshot}}} ({} before the first publish)."""
        root = self.latest_root()
        return (_read_json(root / PUBLISHED_JSON) or {}) if root else {}

    def read_latest(self, table: str, org: str) -> pa.Table:
        path = self.latest_path(table, org)
        if not path.exists():
            raise FileNotFoundError(
                f"no synced '{table}' table for organization '{org}' at {path}: materialize the raw "
                "assets for this organization first")
        return pq.read_table(path)

    def latest_manifest(self, org: str, kind: str = "raw") -> dict[str, Any] | None:
        """The manifest of the snapshot of `kind` published as `latest` for `org`, or None."""
        snapshot = self.published().get("orgs", {}).get(org, {}).get(kind)
        return _read_json(self.manifest_path(org, snapshot)) if snapshot else None

    def read_consistent(self, tables: Iterable[str], org: str) -> tuple[dict[str, pa.Table], str | None]:
        """Tables of one publish: `latest` is resolved once, so a publish meanwhile cannot mix two.
        Returns the tables and the snapshot they come from (None if they come from several)."""
        names = list(tables)
        root = self.latest_root()
        if root is None:
            raise FileNotFoundError(f"nothing published yet under {self.data_dir / LATEST}: materialize the raw "
                                    f"assets for organization '{org}' first")
        out: dict[str, pa.Table] = {}
        for name in names:
            path = root / name / f"org={org}" / f"{name}.parquet"
            if not path.exists():
                raise FileNotFoundError(f"no synced '{name}' table for organization '{org}' in {root}: materialize "
                                        "the raw assets for this organization first")
            out[name] = pq.read_table(path)
        snaps = {(_read_json(root / PUBLISHED_JSON) or {}).get("tables", {}).get(n, {}).get(org) for n in names}
        return out, (snaps.pop() if len(snaps) == 1 and None not in snaps else None)

    def snapshots(self, org: str, kind: str | None = None) -> list[str]:
        """Committed snapshots of `org` (of `kind` if given), newest first."""
        folder = self.data_dir / MANIFESTS / f"org={_safe_part(org, 'organization')}"
        out = []
        for path in folder.glob("*.json") if folder.is_dir() else []:
            m = _read_json(path)
            if m and m.get("snapshot") == path.stem and (kind is None or m.get("kind", "raw") == kind):
                out.append(path.stem)
        return sorted(out, reverse=True)

    # ---- writing -------------------------------------------------------------------------------

    def begin(self, org: str, snapshot: str, *, kind: str = "raw") -> SnapshotDraft:
        """Start writing snapshot `snapshot` of `org` aside (under _staging/); see SnapshotDraft.
        First removes what dead runs of `org` left behind."""
        _safe_part(snapshot, "snapshot")
        _safe_part(kind, "kind")
        folder = self._staging_dir(org)
        with _flock(folder / ".lock"):
            self.clean(org, _locked=True)
            path = folder / snapshot
            if path.exists() or self.manifest_path(org, snapshot).exists():
                raise FileExistsError(f"snapshot {snapshot} of '{org}' exists already: use a new snapshot id")
            path.mkdir(parents=True)
            return SnapshotDraft(self, org, snapshot, kind, path)

    def clean(self, org: str, *, _locked: bool = False) -> list[Path]:
        """Remove what dead runs of `org` left: drafts (their commit rolled back unless it was
        published), temporary files, snapshot folders without a manifest. Returns what it removed."""
        folder = self._staging_dir(org)
        if not _locked:
            with _flock(folder / ".lock"):
                return self.clean(org, _locked=True)
        removed: list[Path] = []
        published = self.published()
        for draft in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not draft.is_dir():
                continue
            with _flock(draft / ".lock", wait=False) as free:
                if not free:
                    continue  # a live run's draft
                journal = _read_json(draft / COMMIT_JOURNAL)
                if journal is not None:
                    removed += self._roll_back(org, draft.name, journal, published)
                shutil.rmtree(draft)
                removed.append(draft)
        removed += self._remove_leftovers(org)
        pub = self.data_dir / PUBLISHED
        if pub.is_dir():  # generations a publish killed midway left
            with _flock(pub / ".lock"):
                current = self._current_generation()
                if current is not None:
                    self._remove_generations(current)
        return removed

    def _roll_back(self, org: str, snapshot: str, journal: dict[str, Any], published: dict[str, Any]) -> list[Path]:
        """A commit that died before its publish: its history folders and manifest go (it was
        never `latest`). One that was published is complete and stays."""
        kind = str(journal.get("kind", "raw"))
        if published.get("orgs", {}).get(org, {}).get(kind) == snapshot:
            return []
        removed = []
        manifest = self.manifest_path(org, snapshot)
        if manifest.exists():
            manifest.unlink()
            removed.append(manifest)
        for table in journal.get("tables", []):
            path = self.snapshot_path(str(table), org, snapshot).parent
            if path.exists():
                shutil.rmtree(path)
                removed.append(path)
        return removed

    def _table_dirs(self, org: str) -> Iterator[Path]:
        """`{data_dir}/{table}/org={org}` of every table with snapshot folders."""
        for child in sorted(self.data_dir.iterdir()) if self.data_dir.is_dir() else []:
            if child.name in _RESERVED or child.name.startswith((".", "_")) or not child.is_dir():
                continue
            folder = child / f"org={org}"
            if folder.is_dir() and not child.is_symlink():
                yield folder

    def _remove_leftovers(self, org: str) -> list[Path]:
        """Temporary files under the organization's history and manifests, and snapshot folders
        without a manifest of tables that have manifests (what runs before these drafts left when
        killed). Folders older than any manifest listing their table are kept: derived tables were
        committed without manifests before."""
        removed: list[Path] = []
        manifests = {s: _read_json(self.manifest_path(org, s)) or {} for s in self.snapshots(org)}
        oldest_with: dict[str, str] = {}
        for snap in sorted(manifests):
            for table in manifests[snap].get("tables", {}):
                oldest_with.setdefault(table, snap)
        for folder in self._table_dirs(org):
            table = folder.parent.name
            # temp files of any writer of the organization (also the audit log's day partitions):
            # one run per organization at a time, so a temp file found here is a dead run's
            for tmp in folder.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
            for snap_dir in sorted(folder.glob("snapshot=*")):
                snap = snap_dir.name.removeprefix("snapshot=")
                if snap in manifests or table not in oldest_with or snap < oldest_with[table]:
                    if not any(snap_dir.iterdir()):
                        snap_dir.rmdir()
                        removed.append(snap_dir)
                    continue
                shutil.rmtree(snap_dir)
                removed.append(snap_dir)
        mdir = self.data_dir / MANIFESTS / f"org={org}"
        for tmp in mdir.glob(".*.tmp") if mdir.is_dir() else []:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        return removed

    def _commit(self, draft: SnapshotDraft, tables: dict[str, dict[str, Any]], manifest: dict[str, Any],
                publish: bool) -> str | None:
        org, snapshot = draft.org, draft.snapshot
        with _flock(self._staging_dir(org) / ".lock"):
            # The journal lets the next run roll back a commit killed before its publish.
            _write_json(draft.path / COMMIT_JOURNAL, {"kind": draft.kind, "tables": sorted(tables)})
            for table in tables:
                dst = self.snapshot_path(table, org, snapshot)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(draft.path / f"{table}.parquet", dst)
            _write_json(self.manifest_path(org, snapshot), manifest)
            generation = self._publish(org, draft.kind, snapshot, sorted(tables)) if publish else None
            (draft.path / COMMIT_JOURNAL).unlink()
            self._apply_retention(org)
        return generation

    def _push(self, org: str, kind: str, snapshot: str, tables: list[str]) -> None:
        """Mirror a published snapshot to Azure storage: its objects, its manifest, then the pointer."""
        assert self.mirror is not None
        files = {t: self.snapshot_path(t, org, snapshot) for t in tables}
        # A table an incremental run shared with an earlier snapshot is the same file (a hard link).
        same_as: dict[str, str] = {}
        for earlier in self.snapshots(org):
            if earlier == snapshot:
                continue
            for t, path in files.items():
                other = self.snapshot_path(t, org, earlier)
                if t not in same_as and other.exists() and os.path.samefile(path, other):
                    same_as[t] = earlier
        try:
            self.mirror.push(org, kind, snapshot, files, self.manifest_path(org, snapshot), same_as,
                             retention=self.retention)
        except OSError as exc:
            raise OSError(f"snapshot {snapshot} of '{org}' is published in the local cache {self.data_dir} but "
                          f"could not be uploaded to {self.mirror.loc.url} ({exc}); readers there still see the "
                          "previous snapshot. Check the storage credentials (AZURE_STORAGE_*) and retry") from None

    def refresh(self, org: str) -> list[str]:
        """With a mirror: make the local cache hold what the storage account's pointer names for `org`
        (another machine may have published since, or this cache is new). Returns the snapshots pulled."""
        if self.mirror is None:
            return []
        pulled = []
        for kind in KINDS:
            got = self.mirror.pull(org, lambda t, s: self.snapshot_path(t, org, s) if t else self.manifest_path(org, s),
                                   kind)
            if got is None:
                continue
            snapshot, files, _manifest = got
            with _flock(self._staging_dir(org) / ".lock"):
                self._publish(org, kind, snapshot, sorted(files))
            pulled.append(snapshot)
        self.mirror.pull_tree(self.data_dir, "audit_log", f"org={_safe_part(org, 'organization')}")
        return pulled

    def _publish(self, org: str, kind: str, snapshot: str, tables: list[str]) -> str:
        """Make the tables of a committed snapshot `latest`, with every other table and organization
        as they were, in one rename of the `latest` link."""
        pub = self.data_dir / PUBLISHED
        with _flock(pub / ".lock"):
            current = self._current_generation()
            before = _read_json(pub / current / PUBLISHED_JSON) if current else None
            state: dict[str, Any] = before or {"tables": {}, "orgs": {}}
            generation = _next_generation(current)
            root = pub / generation
            for table, by_org in state["tables"].items():
                for o in by_org:
                    if o == org and table in tables:
                        continue
                    _link_or_copy(pub / str(current) / table / f"org={o}" / f"{table}.parquet",
                                  root / table / f"org={o}" / f"{table}.parquet")
            for table in tables:
                _link_or_copy(self.snapshot_path(table, org, snapshot),
                              root / table / f"org={org}" / f"{table}.parquet")
                state["tables"].setdefault(table, {})[org] = snapshot
            state["orgs"].setdefault(org, {})[kind] = snapshot
            state["generation"] = generation
            state["published_at"] = datetime.now(UTC).isoformat()
            _write_json(root / PUBLISHED_JSON, state)  # last: a generation without it is unfinished
            link = self.data_dir / LATEST
            tmp = self.data_dir / f".{LATEST}.{uuid.uuid4().hex[:8]}.tmp"
            os.symlink(f"{PUBLISHED}/{generation}", tmp)
            os.replace(tmp, link)  # the switch: rename(2) replaces the link atomically
            _fsync_dir(self.data_dir)
            self._remove_generations(generation)
        return generation

    def _current_generation(self) -> str | None:
        """The generation `latest` points to. An old-layout `latest` folder becomes a generation;
        with no link (killed while converting one) the newest finished generation is current."""
        link = self.data_dir / LATEST
        pub = self.data_dir / PUBLISHED
        if link.is_symlink():
            target = Path(os.readlink(link))
            return target.name if (pub / target.name / PUBLISHED_JSON).exists() else None
        if link.is_dir():
            return self._adopt_old_latest(link)
        finished = sorted((p.name for p in pub.iterdir() if (p / PUBLISHED_JSON).exists()), reverse=True) \
            if pub.is_dir() else []
        return finished[0] if finished else None

    def _adopt_old_latest(self, folder: Path) -> str:
        """Earlier versions kept `latest` as a plain folder: it becomes the first generation."""
        tables: dict[str, dict[str, str]] = {}
        for path in folder.glob("*/org=*/*.parquet"):
            tables.setdefault(path.parent.parent.name, {})[path.parent.name.removeprefix("org=")] = "before-generations"
        generation = _next_generation(None)
        _write_json(folder / PUBLISHED_JSON, {"generation": generation, "tables": tables, "orgs": {},
                                              "published_at": datetime.now(UTC).isoformat()})
        (self.data_dir / PUBLISHED).mkdir(parents=True, exist_ok=True)
        os.rename(folder, self.data_dir / PUBLISHED / generation)
        return generation

    def _remove_generations(self, current: str) -> None:
        """Unfinished generations (a publish killed midway) and those replaced longer than
        `reader_grace_s` ago."""
        for tmp in self.data_dir.glob(f".{LATEST}.*.tmp"):  # a link a killed publish did not rename
            tmp.unlink(missing_ok=True)
        pub = self.data_dir / PUBLISHED
        names = sorted(p.name for p in pub.iterdir() if p.is_dir())
        cutoff = datetime.now(UTC) - timedelta(seconds=self.reader_grace_s)
        for i, name in enumerate(names):
            if name == current:
                continue
            finished = (pub / name / PUBLISHED_JSON).exists()
            replaced_at = _generation_time(names[i + 1]) if i + 1 < len(names) else None
            if not finished or name > current or (replaced_at is not None and replaced_at < cutoff):
                shutil.rmtree(pub / name, ignore_errors=True)

    def _apply_retention(self, org: str) -> list[str]:
        """Delete committed and rejected snapshots of `org` the retention does not keep (never a
        published one). The manifest goes first: a crash midway leaves folders the clean-up removes."""
        now = datetime.now(UTC)
        published = {s for s in self.published().get("orgs", {}).get(org, {}).values()}
        removed: list[str] = []
        by_kind: dict[str, list[str]] = {}
        for snap in self.snapshots(org):
            m = _read_json(self.manifest_path(org, snap)) or {}
            by_kind.setdefault(str(m.get("kind", "raw")), []).append(snap)
        for snaps in by_kind.values():
            keep = self.retention.keeps(snaps, now) | published
            for snap in snaps:
                if snap in keep:
                    continue
                manifest = _read_json(self.manifest_path(org, snap)) or {}
                self.manifest_path(org, snap).unlink(missing_ok=True)
                for table in manifest.get("tables", {}):
                    shutil.rmtree(self.snapshot_path(table, org, snap).parent, ignore_errors=True)
                removed.append(snap)
        rejected = self.data_dir / REJECTED / f"org={org}"
        failed = sorted((p.name for p in rejected.iterdir() if p.is_dir()), reverse=True) if rejected.is_dir() else []
        for snap in set(failed) - self.retention.keeps(failed, now):
            shutil.rmtree(rejected / snap, ignore_errors=True)
            removed.append(snap)
        return removed


KINDS = ("raw", "access_graph", "provisioning")  # what a snapshot can be (the manifest's `kind`)


def _safe_table(table: str) -> str:
    _safe_part(table, "table")
    if table in _RESERVED or table.startswith("_"):
        raise ValueError(f"invalid table {table!r}: names starting with '_' and 'latest' are the store's own")
    return table


def _next_generation(current: str | None) -> str:
    """Generation names sort in publish order: a UTC time to the microsecond, then a random part."""
    name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"
    if current is not None and name <= current:  # a clock set back: still sort after the current one
        name = f"{current}-{uuid.uuid4().hex[:4]}"
    return name


def _generation_time(name: str) -> datetime | None:
    try:
        return datetime.strptime(name[:22], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class SnapshotDraft:
    """A snapshot being written under _staging/ (Store.begin): write, read back, then commit or
    reject. Not visible in `latest` nor under `{table}/` until committed."""

    def __init__(self, store: Store, org: str, snapshot: str, kind: str, path: Path) -> None:
        self.store, self.org, self.snapshot, self.kind, self.path = store, org, snapshot, kind, path
        self.state = "open"  # open | committed | rejected | discarded
        self.generation: str | None = None
        # Held while the run lives: the next run's clean-up skips this draft (flock dies with us).
        self._lock = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def __enter__(self) -> SnapshotDraft:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.state == "open":
            self.discard()
        self._release()

    def _release(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def _open(self) -> None:
        if self.state != "open":
            raise RuntimeError(f"snapshot {self.snapshot} of '{self.org}' is {self.state}: begin a new one")

    def table_path(self, table: str) -> Path:
        """Where the draft's table is (readable once its writer has closed)."""
        return self.path / f"{_safe_table(table)}.parquet"

    def tables(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("*.parquet"))

    def writer(self, table: str, schema: pa.Schema) -> TableWriter:
        self._open()
        return TableWriter(self.table_path(table), schema)

    def write_table(self, table: str, data: pa.Table) -> Path:
        with self.writer(table, data.schema) as w:
            w.write_table(data)
        return w.path

    def link(self, table: str, from_snapshot: str) -> Path:
        """Reuse a committed snapshot's unchanged table (a hard link: no copy, no rewrite)."""
        self._open()
        src = self.store.snapshot_path(table, self.org, from_snapshot)
        if not src.exists():
            raise FileNotFoundError(f"snapshot {from_snapshot} of '{self.org}' has no {table} table at {src}")
        dst = self.table_path(table)
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
        _link_or_copy(src, tmp)
        os.replace(tmp, dst)
        return dst

    def read(self, table: str) -> pa.Table:
        return pq.read_table(self.table_path(table))

    def commit(self, meta: Mapping[str, Mapping[str, Any]] | None = None, *, simulated: bool = False,
               extra: Mapping[str, Any] | None = None, publish: bool = True) -> str | None:
        """Move the tables into the history, write the manifest and (with `publish`) switch `latest`
        to them in one step; then apply the retention. `meta`: more keys per table for the manifest
        (rows are counted here); `extra`: more top-level keys. Returns the published generation."""
        self._open()
        tables = {t: {"rows": pq.ParquetFile(self.table_path(t)).metadata.num_rows, **dict((meta or {}).get(t, {}))}
                  for t in self.tables()}
        if not tables:
            raise ValueError(f"snapshot {self.snapshot} of '{self.org}' has no table to commit")
        manifest = {"org": self.org, "snapshot": self.snapshot, "kind": self.kind, "simulated": simulated,
                    "completed_at": datetime.now(UTC).isoformat(), "tables": tables, **dict(extra or {})}
        self.generation = self.store._commit(self, tables, manifest, publish)
        self.state = "committed"
        shutil.rmtree(self.path, ignore_errors=True)
        self._release()
        if publish and self.store.mirror is not None:
            self.store._push(self.org, self.kind, self.snapshot, sorted(tables))
        return self.generation

    def reject(self, problems: Iterable[str]) -> Path:
        """Keep the draft for inspection under `_rejected/org={org}/{snapshot}/` with REJECTED.json
        naming the problems; it is never published. Returns that folder."""
        self._open()
        dst = self.store.rejected_path(self.org, self.snapshot)
        _write_json(self.path / REJECTED_JSON, {
            "org": self.org, "snapshot": self.snapshot, "kind": self.kind, "rejected_at": datetime.now(UTC).isoformat(),
            "problems": list(problems), "tables": self.tables(),
            "note": "failed reconciliation: kept for inspection, never published as latest"})
        (self.path / ".lock").unlink(missing_ok=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.path, dst)
        self.state = "rejected"
        self._release()
        with _flock(self.store._staging_dir(self.org) / ".lock"):
            self.store._apply_retention(self.org)
        return dst

    def discard(self) -> None:
        """Delete the draft (a failed run publishes nothing and leaves nothing)."""
        if self.state == "open":
            shutil.rmtree(self.path, ignore_errors=True)
            self.state = "discarded"
        self._release()


def statistics_columns(schema: pa.Schema) -> list[str] | bool:
    """Columns that get Parquet min/max statistics: not the strings. Identifiers and names are in no
    useful order, so their row-group ranges span nearly everything and prune nothing, while computing
    them was a third of the time spent writing a large table."""
    def stringy(t: pa.DataType) -> bool:
        if pa.types.is_dictionary(t):
            return stringy(t.value_type)
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return stringy(t.value_type)
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t))
    cols = [f.name for f in schema if not stringy(f.type)]
    return cols or False


@dataclass
class TableWriter:
    """Streams rows into one Parquet file: temp file while writing, rename on success."""

    path: Path
    schema: pa.Schema
    rows: int = 0
    _buffer: list[Mapping[str, Any]] = field(default_factory=list)
    _writer: pq.ParquetWriter | None = None
    _tmp: Path | None = None

    def __enter__(self) -> TableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd",
                                        write_statistics=statistics_columns(self.schema))
        return self

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._buffer.extend(rows)
        if len(self._buffer) >= BATCH_ROWS:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        self._flush()
        assert self._writer is not None
        self._writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def _flush(self) -> None:
        if not self._buffer:
            return
        assert self._writer is not None
        batch = pa.RecordBatch.from_pylist(self._buffer, schema=self.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows
        self._buffer.clear()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._writer is not None and self._tmp is not None
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
