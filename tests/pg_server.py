"""A throwaway PostgreSQL server for tests and benchmarks: initdb on a temp dir, pg_ctl start/stop.

Debian's ``postgresql`` package puts initdb and pg_ctl in /usr/lib/postgresql/<major>/bin
(not on PATH). The server listens on a Unix socket in its own temp dir and on a free
localhost port, trusts local connections (nothing but this process can reach the socket
dir), and is stopped and deleted at the end. PostgreSQL refuses to run as root, so as
root it runs as the ``postgres`` user (created by the package) through ``runuser``.
Missing binaries are an error, never a skip: a skipped PostgreSQL test in CI is a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = ("install PostgreSQL: `apt-get install -y postgresql` (Debian/Ubuntu; `make install-postgres` "
                "does it), or put a directory holding initdb and pg_ctl in DESIRU_PG_BIN")


def find_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl: DESIRU_PG_BIN, Debian's newest, or PATH."""
    env = os.environ.get("DESIRU_PG_BIN")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(os.path.dirname(found))
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "initdb")) and os.path.isfile(os.path.join(c, "pg_ctl")):
            return Path(c)
    raise RuntimeError(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One server on a temp dir; ``url`` (Unix socket) and ``tcp_url`` (localhost) reach it."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin = bin_dir or find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="desiru-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server as; "
                                   + INSTALL_HINT) from None
            os.chmod(self.root, 0o700)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.sock.mkdir()
        if self._as:
            shutil.chown(self.sock, "postgres", "postgres")
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", self.user,
                   "-E", "UTF8", "--no-sync", "--locale=C"])

    @property
    def url(self) -> str:
        """A libpq URL over the Unix socket."""
        return f"postgresql://{self.user}@/postgres?host={self.sock}&port={self.port}"

    @property
    def tcp_url(self) -> str:
        """A libpq URL over localhost TCP."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    def start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.sock} "
                f"-c max_connections=200 -c shared_buffers=64MB")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                   "-t", "60", "start"])

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``; "immediate" is a crash (no checkpoint, recovery at the next start)."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        if self.running():
            try:
                self.stop("fast")
            except RuntimeError:
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_ready(url: str, timeout: float = 30.0) -> None:
    """Block until the server accepts connections."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
