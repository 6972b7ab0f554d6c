"""Parquet on Azure storage (Data Lake Storage Gen2 or Blob), through pyarrow's AzureFileSystem.

`data_dir` may be `abfs[s]://<container>@<account>.dfs.core.windows.net/<path>` or
`az://<container>/<path>` (account from AZURE_STORAGE_ACCOUNT_NAME). The pipeline then works as
always on a local cache folder (snapshots streamed page by page, reconciled, published atomically),
and mirrors every committed snapshot to the storage account:

1. the snapshot's table files, as immutable objects under their snapshot id
   (`{table}/org={org}/snapshot={id}/{table}.parquet`; a table shared with the previous snapshot is
   copied server-side, not uploaded again), then its manifest (`_manifests/org={org}/{id}.json`);
2. last, one small pointer object per organization, `_latest/org={org}.json`, naming the snapshot of
   each kind and each table's snapshot.

Blob storage has no atomic rename across objects (Azurite none at all), but replacing one object in
one request is atomic: readers resolve the pointer and read the objects it names, so they see the
previous snapshot or the new one, never a mix. pyarrow's output stream is not one request (it
creates the object EMPTY when opened, then commits the data when closed), so the manifest and the
pointer are written to a temporary object first, then copied over their name server-side (`put_whole`).
Objects of a run killed before its pointer are never named by a pointer; after each push,
`Mirror.clean` removes those older than a grace period. `Mirror.snapshots` lists the committed
snapshots (those with a manifest). A machine with an empty cache (another worker pod) first pulls
what the pointer names (`Mirror.pull`).

Credentials come from the environment, never from the configuration file: AZURE_STORAGE_ACCOUNT_KEY,
or AZURE_STORAGE_SAS_TOKEN, or else the default credential chain (AZURE_CLIENT_ID / AZURE_TENANT_ID /
AZURE_CLIENT_SECRET, workload or managed identity, Azure CLI), as pyarrow's AzureFileSystem documents:
https://arrow.apache.org/docs/python/generated/pyarrow.fs.AzureFileSystem.html
AZURE_STORAGE_BLOB_ENDPOINT (e.g. `http://127.0.0.1:10000`) points at an emulator such as Azurite.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from .client.errors import ConfigurationError

SCHEMES = ("abfs", "abfss", "az")
POINTERS = "_latest"
MANIFESTS = "_manifests"
_DFS_HOST = re.compile(r"^(?P<container>[^@/]+)@(?P<account>[a-z0-9]{3,24})\.(dfs|blob)\.core\.windows\.net$")


log = logging.getLogger(__name__)


class RetentionRule(Protocol):
    """store.Retention: which snapshots (newest first) the `snapshots:` setting keeps."""

    def keeps(self, newest_first: list[str], now: datetime) -> set[str]: ...

TMP_SUFFIX = ".tmp"  # temporary objects of put_whole: `.{name}.{uuid}.tmp` beside their target


def put_whole(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write one object so that readers see the old content or the new one, never an empty or partial
    object: pyarrow's Azure output stream creates the object empty when opened and fills it when
    closed, so the data goes to a temporary object beside it, which is then copied over `path`
    server-side (Copy Blob From URL replaces the target in one request) and deleted. A process killed
    midway leaves `path` as it was, and at most a temporary object that `Mirror.clean` removes."""
    folder, _, name = path.rpartition("/")
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex}{TMP_SUFFIX}"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    try:
        fs.copy_file(tmp, path)
    finally:
        fs.delete_file(tmp)


def _time(value: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def is_remote(value: str | os.PathLike[str]) -> bool:
    return isinstance(value, str) and value.split("://", 1)[0].lower() in SCHEMES and "://" in value


@dataclass(frozen=True)
class RemoteLocation:
    """Where the Parquet goes in a storage account (no secret is ever part of it)."""

    url: str
    account: str
    container: str
    prefix: str  # path inside the container, no leading or trailing slash

    def path(self, *parts: str) -> str:
        """`container/prefix/parts…`: a path for the AzureFileSystem (the account is its root)."""
        return "/".join(p for p in (self.container, self.prefix, *parts) if p)

    def cache_dir(self) -> Path:
        """The default local cache of this location (one per account, container and path)."""
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return base / "azdo-pipeline" / f"{self.account}-{self.container}-{digest}"


def local_root(override: str | None, data_dir: Path, data_url: str | None,
               cache_dir: Path | None) -> tuple[Path, str | None]:
    """(the local folder the pipeline works in, the Azure URL it mirrors to or None) for a configuration
    (`data_dir`, `data_url`, `cache_dir`) and an optional override of its data_dir (a path or a URL)."""
    if override and is_remote(override):
        cache = cache_dir or (data_dir if override == data_url else parse_url(override).cache_dir())
        return cache, override
    if override:
        return Path(override), None
    return data_dir, data_url


def parse_url(url: str) -> RemoteLocation:
    """`abfs[s]://container@account.dfs.core.windows.net/path` or `az://container/path`."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(f"data_dir: {url!r} is not an abfs:// or az:// URL")
    if parts.query or parts.fragment or parts.password or (parts.username and ":" in (parts.netloc or "")):
        raise ConfigurationError(
            "data_dir: an Azure storage URL must not carry credentials or a query (a SAS token belongs in "
            "AZURE_STORAGE_SAS_TOKEN, an account key in AZURE_STORAGE_ACCOUNT_KEY)")
    prefix = parts.path.strip("/")
    if scheme in ("abfs", "abfss"):
        m = _DFS_HOST.match(parts.netloc)
        if not m:
            raise ConfigurationError(
                f"data_dir: {url!r}: expected abfs://<container>@<account>.dfs.core.windows.net/<path>")
        return RemoteLocation(url, m["account"], m["container"], prefix)
    account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME", "")
    if not account:
        raise ConfigurationError(f"data_dir: {url!r} names no storage account: set AZURE_STORAGE_ACCOUNT_NAME "
                                 "or use abfs://<container>@<account>.dfs.core.windows.net/<path>")
    if not parts.netloc:
        raise ConfigurationError(f"data_dir: {url!r}: expected az://<container>/<path>")
    return RemoteLocation(url, account, parts.netloc, prefix)


def filesystem(loc: RemoteLocation) -> pafs.AzureFileSystem:
    """The storage account, with credentials from the environment."""
    kw: dict[str, Any] = {}
    endpoint = os.environ.get("AZURE_STORAGE_BLOB_ENDPOINT")
    if endpoint:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.netloc:
            raise ConfigurationError("AZURE_STORAGE_BLOB_ENDPOINT must be http(s)://host[:port]")
        kw.update(blob_storage_authority=ep.netloc, blob_storage_scheme=ep.scheme,
                  dfs_storage_authority=ep.netloc, dfs_storage_scheme=ep.scheme)
    key, sas = os.environ.get("AZURE_STORAGE_ACCOUNT_KEY"), os.environ.get("AZURE_STORAGE_SAS_TOKEN")
    if key and sas:
        raise ConfigurationError("set AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, not both")
    if key:
        kw["account_key"] = key
    elif sas:
        kw["sas_token"] = sas.lstrip("?")
    return pafs.AzureFileSystem(loc.account, **kw)


class Mirror:
    """Committed snapshots of the local store, mirrored to a storage account (see the module doc)."""

    def __init__(self, loc: RemoteLocation, fs: pafs.FileSystem | None = None,
                 grace: timedelta = timedelta(hours=1), reader_grace: timedelta = timedelta(minutes=15)) -> None:
        self.loc = loc
        self.fs = fs if fs is not None else filesystem(loc)
        self.grace = grace  # objects of unfinished uploads younger than this may be a live run's
        # a snapshot replaced less than this ago may still be read by whoever resolved the pointer before
        self.reader_grace = reader_grace

    def __repr__(self) -> str:
        return f"Mirror({self.loc.url!r})"

    # ---- paths --------------------------------------------------------------------------------------
    def table_path(self, table: str, org: str, snapshot: str) -> str:
        return self.loc.path(table, f"org={org}", f"snapshot={snapshot}", f"{table}.parquet")

    def manifest_path(self, org: str, snapshot: str) -> str:
        return self.loc.path(MANIFESTS, f"org={org}", f"{snapshot}.json")

    def pointer_path(self, org: str) -> str:
        return self.loc.path(POINTERS, f"org={org}.json")

    # ---- objects ------------------------------------------------------------------------------------
    def _exists(self, path: str) -> bool:
        return bool(self.fs.get_file_info(path).type == pafs.FileType.File)

    def _put(self, path: str, data: bytes) -> None:
        put_whole(self.fs, path, data)

    def _get_json(self, path: str) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(path) as f:
                value = json.loads(f.read())
        except FileNotFoundError:
            return None
        return value if isinstance(value, dict) else None

    def pointer(self, org: str) -> dict[str, Any]:
        """{"kinds": {kind: snapshot}, "tables": {table: snapshot}, "updated_at"} ({} before the first)."""
        return self._get_json(self.pointer_path(org)) or {}

    # ---- push ---------------------------------------------------------------------------------------
    def push(self, org: str, kind: str, snapshot: str, files: Mapping[str, Path], manifest: Path,
             same_as: Mapping[str, str] | None = None, retention: RetentionRule | None = None) -> None:
        """Upload a committed snapshot (tables, then manifest), then switch the organization's pointer.
        `same_as`: tables whose file is an earlier snapshot's (shared, not rewritten): copied within
        the account instead of uploaded again. Then clean, and apply `retention` to the account."""
        self.fs.create_dir(self.loc.path())
        before = self.pointer(org)
        for table, local in files.items():
            dst = self.table_path(table, org, snapshot)
            info = self.fs.get_file_info(dst)
            if info.type == pafs.FileType.File and info.size == Path(local).stat().st_size:
                continue  # pushed whole by an earlier attempt (one killed midway leaves it empty or short)
            earlier = (same_as or {}).get(table)
            if earlier and self._exists(self.table_path(table, org, earlier)):
                try:
                    self.fs.copy_file(self.table_path(table, org, earlier), dst)  # server-side, no upload
                    continue
                except OSError as exc:  # e.g. Copy Blob From URL's 256 MiB limit on a source: upload it
                    log.info("%s: copying %s within the account failed (%s); uploading it", self.loc.url, dst, exc)
            # Streamed to its final name: nothing names it until the manifest and the pointer do.
            with open(local, "rb") as src, self.fs.open_output_stream(dst) as out:
                while chunk := src.read(8 << 20):
                    out.write(chunk)
        self._put(self.manifest_path(org, snapshot), manifest.read_bytes())
        state: dict[str, Any] = {"kinds": dict(before.get("kinds") or {}), "tables": dict(before.get("tables") or {})}
        state["kinds"][kind] = snapshot
        for table in files:
            state["tables"][table] = snapshot
        state["updated_at"] = datetime.now(UTC).isoformat()
        self._put(self.pointer_path(org), json.dumps(state, indent=1, sort_keys=True).encode())  # the switch
        try:  # what runs killed earlier left, and old snapshots; the push is done whatever happens here
            self.clean(org, self.grace)
            if retention is not None:
                self.apply_retention(org, retention)
        except OSError as exc:
            log.warning("%s: could not clean what earlier runs of '%s' left or apply the retention (%s); "
                        "the next push retries", self.loc.url, org, exc)

    # ---- listing ------------------------------------------------------------------------------------
    def snapshots(self, org: str, kind: str | None = None) -> list[str]:
        """Committed snapshots of `org` in the account (of `kind` if given), newest first: those with a
        manifest, which is written (whole) only after every table object of its snapshot. Table
        objects of an upload that never finished have none and are not listed."""
        return [s for s, m in self._manifests(org).items() if kind is None or m.get("kind", "raw") == kind]

    def _manifests(self, org: str) -> dict[str, dict[str, Any]]:
        """{snapshot: manifest} of the committed snapshots of `org`, newest first."""
        out = {}
        for info in self._list(self.loc.path(MANIFESTS, f"org={org}")):
            name = info.base_name
            if info.type != pafs.FileType.File or name.startswith(".") or not name.endswith(".json"):
                continue
            m = self._get_json(info.path)
            if m and m.get("snapshot") == name[:-5]:
                out[name[:-5]] = m
        return {s: out[s] for s in sorted(out, reverse=True)}

    def apply_retention(self, org: str, retention: RetentionRule) -> list[str]:
        """Delete the committed snapshots of `org` in the account that the retention (the `snapshots:`
        setting, the same rule as in the local cache) does not keep. Never one the pointer names (for
        any kind or table), nor one replaced less than `reader_grace` ago (a reader may have resolved
        the pointer just before). The manifest goes first: a deletion cut short leaves table objects
        without one, which the next clean removes. Returns the deleted snapshots."""
        pointer = self.pointer(org)
        named = set((pointer.get("kinds") or {}).values()) | set((pointer.get("tables") or {}).values())
        now = datetime.now(UTC)
        manifests = self._manifests(org)
        by_kind: dict[str, list[str]] = {}
        for snap, m in manifests.items():
            by_kind.setdefault(str(m.get("kind", "raw")), []).append(snap)
        gone: list[str] = []
        for snaps in by_kind.values():
            keep = retention.keeps(snaps, now) | named
            for i, snap in enumerate(snaps):
                replaced_at = _time(manifests[snaps[i - 1]].get("completed_at")) if i else None
                if snap in keep or replaced_at is None or now - replaced_at < self.reader_grace:
                    continue
                self.fs.delete_file(self.manifest_path(org, snap))
                for table in manifests[snap].get("tables") or {}:
                    path = self.table_path(table, org, snap)
                    if self._exists(path):
                        self.fs.delete_file(path)
                gone.append(snap)
        return gone

    def _list(self, base: str, recursive: bool = False) -> list[pafs.FileInfo]:
        return list(self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=recursive)))

    # ---- pull ---------------------------------------------------------------------------------------
    def pull(self, org: str, cache_snapshot: Any, kind: str) -> tuple[str, dict[str, Path], Path] | None:
        """Download what the pointer names for `kind` when the local cache lacks it: returns (snapshot,
        {table: local file}, manifest file) written under paths `cache_snapshot(table or None,
        snapshot)` gives, or None when the cache is current (or nothing was pushed yet)."""
        snapshot = (self.pointer(org).get("kinds") or {}).get(kind)
        if not snapshot:
            return None
        manifest_local: Path = cache_snapshot(None, snapshot)
        if manifest_local.exists():
            return None
        manifest = self._get_json(self.manifest_path(org, snapshot))
        if manifest is None:
            raise FileNotFoundError(f"{self.loc.url}: the pointer of '{org}' names snapshot {snapshot}, "
                                    "whose manifest is missing")
        files: dict[str, Path] = {}
        for table in manifest.get("tables") or {}:
            local: Path = cache_snapshot(table, snapshot)
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.pull.tmp")
            with self.fs.open_input_stream(self.table_path(table, org, snapshot)) as src, open(tmp, "wb") as out:
                while chunk := src.read(8 << 20):
                    out.write(chunk)
            os.replace(tmp, local)
            files[table] = local
        manifest_local.parent.mkdir(parents=True, exist_ok=True)
        tmp = manifest_local.with_name(f".{manifest_local.name}.pull.tmp")
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, manifest_local)
        return snapshot, files, manifest_local

    # ---- append-only files (the audit_log table's part files) ----------------------------------------
    def push_files(self, root: Path, files: list[Path]) -> None:
        """Upload files under `root` to the same relative paths (immutable part files, each appearing
        whole: analysts glob `audit_log/org=…/day=…/*.parquet`, where an empty object would break the read)."""
        self.fs.create_dir(self.loc.path())  # the container, on a first run
        for local in files:
            dst = self.loc.path(*Path(local).relative_to(root).parts)
            info = self.fs.get_file_info(dst)
            if info.type != pafs.FileType.File or info.size != Path(local).stat().st_size:
                put_whole(self.fs, dst, Path(local).read_bytes())

    def pull_tree(self, root: Path, *parts: str) -> list[Path]:
        """Download the files under `parts` the local `root` lacks (another machine appended them)."""
        base = self.loc.path(*parts)
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True))
        except FileNotFoundError:
            return []
        got = []
        prefix = self.loc.path()
        for info in infos:
            if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
                continue
            local = Path(root, *info.path[len(prefix):].strip("/").split("/"))
            if local.exists():
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.pull.tmp")
            with self.fs.open_input_stream(info.path) as src:
                tmp.write_bytes(src.read())
            os.replace(tmp, local)
            got.append(local)
        return got

    # ---- cleaning -----------------------------------------------------------------------------------
    def clean(self, org: str, grace: timedelta | None = None) -> list[str]:
        """Delete table objects of `org` whose snapshot has no manifest here (a run killed while
        uploading: never named by a pointer) once older than `grace` (a run still uploading is
        younger). Committed snapshots are kept. Returns the deleted paths."""
        committed = set(self.snapshots(org))
        cutoff = datetime.now(UTC) - (self.grace if grace is None else grace)
        gone: list[str] = []

        def old(info: pafs.FileInfo) -> bool:
            mtime = info.mtime
            return mtime is None or mtime.replace(tzinfo=mtime.tzinfo or UTC) <= cutoff

        for info in self._list(self.loc.path(), recursive=True):
            if info.type != pafs.FileType.File:
                continue
            m = re.search(rf"/org={re.escape(org)}/snapshot=([^/]+)/[^/]+\.parquet$", info.path)
            orphan = m is not None and m[1] not in committed
            # put_whole's temporary objects a killed run left (manifest, pointer, audit_log part)
            tmp = info.base_name.startswith(".") and info.base_name.endswith(TMP_SUFFIX) and (
                f"/org={org}/" in info.path or info.base_name.startswith(f".org={org}.json."))
            if (orphan or tmp) and old(info):
                self.fs.delete_file(info.path)
                gone.append(info.path)
        return gone
