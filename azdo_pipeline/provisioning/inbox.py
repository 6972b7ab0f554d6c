"""The provisioning inbox: a directory where requests arrive as JSON files, on local disk or (with
data_dir on Azure storage) in the storage account (`RemoteInbox`).

Layout (documented in docs/operations.md, "Provisioning inbox"):

    {inbox}/incoming/    drop requests here: one JSON document per file, name ending in .json
    {inbox}/processed/   requests taken into the ledger (their outcome is in provisioning_outcomes)
    {inbox}/rejected/    malformed requests, each with `<file>.reason.txt` beside it
    {inbox}/ledger.sqlite3   what was received and carried out (see ledger.py); never edit it

Writers make a file appear whole: write a temporary name that starts with "." or does not end in
".json", then rename it (`write_request` does). The sensor skips such temporary names, so it
never reads half a file. In the storage account, upload a small file in one request (`az storage
blob upload`, azcopy, or an SDK's upload_blob each send one Put Blob), or likewise under a temporary
name then copy it (`write_request` does). Arrival order is the order of modification time, then name.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from ..remote import put_whole

if TYPE_CHECKING:
    from ..remote import Mirror

INCOMING, PROCESSED, REJECTED = "incoming", "processed", "rejected"
LEDGER_FILE = "ledger.sqlite3"
REASON_SUFFIX = ".reason.txt"
NOTE_SUFFIX = ".note.txt"
# A request is a few hundred bytes; anything far larger is refused unread (it could be anything).
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class IncomingFile:
    path: PurePath  # a local Path, or the object's path in the storage account
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name


class Inbox:
    """The three folders and the moves between them (each move is one rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / INCOMING
        self.processed = self.root / PROCESSED
        self.rejected = self.root / REJECTED

    @property
    def ledger_path(self) -> Path:
        return self.root / LEDGER_FILE

    def ensure(self) -> Inbox:
        for folder in (self.incoming, self.processed, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def scan(self, limit: int | None = None) -> list[IncomingFile]:
        """Request files waiting in incoming/, oldest first (temporary names skipped)."""
        found: list[IncomingFile] = []
        try:
            entries = list(os.scandir(self.incoming))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(".json"):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # taken by another reader meanwhile
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            found.append(IncomingFile(Path(entry.path), st.st_size, st.st_mtime_ns))
        found.sort(key=lambda f: (f.mtime_ns, f.name))
        return found[:limit] if limit is not None else found

    def read(self, f: IncomingFile) -> bytes:
        """The file's bytes; ValueError naming the limit for a file too large to be a request."""
        _check_size(f.size)
        with open(f.path, "rb") as fh:
            return _checked(fh.read(MAX_REQUEST_BYTES + 1))

    def processed_has(self, name: str) -> bool:
        return (self.processed / name).exists()

    def move_processed(self, f: IncomingFile, note: str | None = None) -> PurePath:
        dest = self._move(Path(f.path), self.processed)
        if note:
            _write_atomic(dest.with_name(dest.name + NOTE_SUFFIX), note.rstrip() + "\n")
        return dest

    def move_rejected(self, f: IncomingFile, reason: str) -> PurePath:
        dest = self._move(Path(f.path), self.rejected)
        # The reason goes beside the file: what is wrong and how to fix it, then when.
        _write_atomic(dest.with_name(dest.name + REASON_SUFFIX),
                      f"{reason.rstrip()}\nrejected at {datetime.now(UTC).isoformat()}\n")
        return dest

    def _move(self, src: Path, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / src.name
        if dest.exists() or dest.with_name(dest.name + REASON_SUFFIX).exists():
            # A file of that name was handled before (re-dropped): keep both, never overwrite.
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            dest = folder / f"{src.stem}.{stamp}-{uuid.uuid4().hex[:6]}{src.suffix}"
        os.replace(src, dest)
        return dest

    def write_request(self, document: Mapping[str, Any], name: str | None = None) -> PurePath:
        """Write one request into incoming/ atomically (temporary file, then rename)."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        safe = _file_stem(document, name)
        dest = self.incoming / f"{safe}.json"
        if dest.exists():
            dest = self.incoming / f"{safe}-{uuid.uuid4().hex[:6]}.json"
        _write_atomic(dest, json.dumps(dict(document), indent=2, sort_keys=True) + "\n")
        return dest


def _check_size(size: int) -> None:
    if size > MAX_REQUEST_BYTES:
        raise ValueError(f"the file is {size} bytes; a request is at most {MAX_REQUEST_BYTES} bytes "
                         "(one JSON object per file)")


def _checked(data: bytes) -> bytes:
    """The bytes read (at most the limit + 1): a file that grew past the limit since it was listed."""
    if len(data) > MAX_REQUEST_BYTES:
        raise ValueError(f"the file is over {MAX_REQUEST_BYTES} bytes; a request is at most "
                         f"{MAX_REQUEST_BYTES} bytes (one JSON object per file)")
    return data


def _file_stem(document: Mapping[str, Any], name: str | None) -> str:
    stem = name or str(document.get("id") or uuid.uuid4().hex)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".") or uuid.uuid4().hex


class RemoteInbox(Inbox):
    """The inbox's three folders in the storage account (`{data_dir URL}/inbox/…`), so other tools drop
    requests there; the SQLite ledger and the publish locks stay in the local `root` (object storage
    cannot hold a database; keep `root` on a persistent volume). A request object is written with
    one PUT (whole or absent); a move is a server-side copy then a delete, and is repeatable: a move
    cut short leaves the request in incoming/, where the ledger recognises it (same id) and finishes
    the move without carrying it out again."""

    def __init__(self, root: str | Path, mirror: Mirror, prefix: str = "inbox") -> None:
        super().__init__(root)
        self.fs = mirror.fs
        self.base = mirror.loc.path(prefix)
        self.url = f"{mirror.loc.url.rstrip('/')}/{prefix}"

    def __repr__(self) -> str:
        return f"RemoteInbox({self.url!r})"

    def _key(self, folder: str, name: str = "") -> str:
        return "/".join(p for p in (self.base, folder, name) if p)

    def _exists(self, key: str) -> bool:
        return bool(self.fs.get_file_info(key).type == pafs.FileType.File)

    def _put(self, key: str, text: str) -> None:
        # Whole or absent: a plain output stream shows an empty object in incoming/ until it closes,
        # which a scan would take for a malformed request.
        put_whole(self.fs, key, text.encode())

    def ensure(self) -> Inbox:
        self.root.mkdir(parents=True, exist_ok=True)
        self.fs.create_dir(self.base)
        return self

    def scan(self, limit: int | None = None) -> list[IncomingFile]:
        infos = self.fs.get_file_info(pafs.FileSelector(self._key(INCOMING), allow_not_found=True))
        found = [IncomingFile(PurePosixPath(i.path), int(i.size or 0), int(i.mtime_ns or 0)) for i in infos
                 if i.type == pafs.FileType.File and not i.base_name.startswith(".") and i.base_name.endswith(".json")]
        found.sort(key=lambda f: (f.mtime_ns, f.name))
        return found[:limit] if limit is not None else found

    def read(self, f: IncomingFile) -> bytes:
        _check_size(f.size)
        with self.fs.open_input_stream(str(f.path)) as src:
            return _checked(src.read(MAX_REQUEST_BYTES + 1))

    def processed_has(self, name: str) -> bool:
        return self._exists(self._key(PROCESSED, name))

    def _remote_move(self, f: IncomingFile, folder: str) -> str:
        dest = self._key(folder, f.name)
        if self._exists(dest) or self._exists(dest + REASON_SUFFIX):
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            p = PurePosixPath(f.name)
            dest = self._key(folder, f"{p.stem}.{stamp}-{uuid.uuid4().hex[:6]}{p.suffix}")
        self.fs.copy_file(str(f.path), dest)
        self.fs.delete_file(str(f.path))
        return dest

    def move_processed(self, f: IncomingFile, note: str | None = None) -> PurePath:
        dest = self._remote_move(f, PROCESSED)
        if note:
            self._put(dest + NOTE_SUFFIX, note.rstrip() + "\n")
        return PurePosixPath(dest)

    def move_rejected(self, f: IncomingFile, reason: str) -> PurePath:
        dest = self._remote_move(f, REJECTED)
        self._put(dest + REASON_SUFFIX, f"{reason.rstrip()}\nrejected at {datetime.now(UTC).isoformat()}\n")
        return PurePosixPath(dest)

    def write_request(self, document: Mapping[str, Any], name: str | None = None) -> PurePath:
        safe = _file_stem(document, name)
        dest = self._key(INCOMING, f"{safe}.json")
        if self._exists(dest):
            dest = self._key(INCOMING, f"{safe}-{uuid.uuid4().hex[:6]}.json")
        self._put(dest, json.dumps(dict(document), indent=2, sort_keys=True) + "\n")
        return PurePosixPath(dest)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
