"""A throwaway PostgreSQL server on 127.0.0.1 for tests (Debian's postgresql package).

.ci/run installs the package when `initdb` is missing; `find_bin()` looks in PATH and in
/usr/lib/postgresql/<version>/bin. PostgreSQL refuses to run as root, so as root the cluster
belongs to the `postgres` user the package creates, and its commands run through `runuser`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


def find_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None when PostgreSQL is not installed."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.access(os.path.join(folder, "initdb"), os.X_OK):
            return Path(folder)
    return None


def why_unavailable() -> str | None:
    """Why no server can be started here, or None when one can."""
    if find_bin() is None:
        return ("PostgreSQL is not installed (no initdb in PATH or /usr/lib/postgresql/*/bin); "
                "`apt-get install postgresql` (what .ci/run does) provides it")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _uid("postgres") is None):
        return "running as root without a `postgres` user to run the server as (install Debian's postgresql package)"
    return None


def _uid(user: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    user: str = "dagster"
    password: str = "dagster-test-pw"
    db: str = "dagster"
    port: int = 0
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="azdo-pg-")))

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        bindir = find_bin()
        assert bindir is not None
        cmd = [str(bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        env = dict(os.environ, PGPASSWORD=self.password)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env,
                              stdin=subprocess.DEVNULL)

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")

    def start(self) -> PostgresServer:
        data, socks = self.root / "data", self.root / "sock"
        socks.mkdir()
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if os.geteuid() == 0:
            uid = _uid("postgres")
            assert uid is not None
            for p in (self.root, socks, pwfile):
                os.chown(p, uid, -1)
        self._check(self._run("initdb", "-D", str(data), "-U", self.user, "--pwfile", str(pwfile),
                              "-A", "scram-sha-256", "-E", "UTF8", "--no-sync"), "initdb")
        self.port = _free_port()
        opts = f"-h 127.0.0.1 -p {self.port} -k {socks} -c fsync=off -c max_connections=200"
        self._check(self._run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.root / "log"), "-w",
                              "-t", "60", "start"), "pg_ctl start")
        self._check(self._run("createdb", "-h", str(socks), "-p", str(self.port), "-U", self.user, self.db),
                    "createdb")
        return self

    def stop(self) -> None:
        if self.port:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """The variables deploy/dagster.postgres.yaml reads."""
        return {"DAGSTER_PG_USERNAME": self.user, "DAGSTER_PG_PASSWORD": self.password,
                "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_DB": self.db, "DAGSTER_PG_PORT": str(self.port)}
