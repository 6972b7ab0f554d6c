"""Azurite (Microsoft's Azure Storage emulator, an npm package) on 127.0.0.1 for tests.

`find_azurite()` looks for `azurite-blob` in PATH and in a cache folder outside the repository
(~/.cache/azdo-pipeline-tests/azurite); when it is in neither, `install()` runs
`npm install azurite@3` into that cache (about a minute). Tests skip, printing why, only when no
npm is there to install it with or the install fails.
https://learn.microsoft.com/azure/storage/common/storage-use-azurite
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "azdo-pipeline-tests" / "azurite"
# The emulator's well-known development account (documented by Microsoft; not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def find_azurite() -> Path | None:
    on_path = shutil.which("azurite-blob")
    if on_path:
        return Path(on_path)
    cached = CACHE / "node_modules" / ".bin" / "azurite-blob"
    return cached if cached.exists() else None


def install() -> tuple[Path | None, str | None]:
    """(the azurite-blob executable, None) or (None, why it cannot be had here)."""
    found = find_azurite()
    if found is not None:
        return found, None
    npm = shutil.which("npm")
    if npm is None:
        return None, "Azurite is not installed and there is no npm to install it (`npm install -g azurite@3`)"
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(CACHE), "azurite@3"],
                       check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        out = getattr(exc, "stderr", b"") or b""
        return None, f"`npm install azurite@3` failed: {exc} {out.decode(errors='replace')[-300:]}"
    found = find_azurite()
    return (found, None) if found else (None, "`npm install azurite@3` gave no azurite-blob")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AzuriteServer:
    binary: Path
    port: int = field(default_factory=_free_port)
    _proc: subprocess.Popen[bytes] | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What the pipeline reads to reach this account (remote.filesystem)."""
        return {"AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": KEY,
                "AZURE_STORAGE_BLOB_ENDPOINT": self.endpoint}

    def start(self) -> AzuriteServer:
        self._dir = tempfile.TemporaryDirectory(prefix="azurite-")
        self._proc = subprocess.Popen(
            [str(self.binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", self._dir.name,
             "--silent", "--skipApiVersionCheck", "--loose"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"azurite-blob exited ({self._proc.returncode}): {err[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("azurite-blob did not listen within 60 s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._dir is not None:
            self._dir.cleanup()
