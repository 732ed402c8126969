"""A throwaway PostgreSQL server for tests, from Debian's ``postgresql`` package.

``postgres_server`` (a session fixture) runs ``initdb`` into a temporary folder and starts the
server on a free loopback port with its socket in that folder; it is stopped in teardown
whether the tests passed or failed. As root, the server runs as the ``postgres`` user (it
refuses to run as root). Missing PostgreSQL fails the run when ``CI=true`` and skips locally.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

_USER = "postgres"


@dataclass(frozen=True, slots=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"


def _bin_dir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", _USER, "--", *args]


def _run(args: list[str]) -> None:
    done = subprocess.run(_as_server_user(args), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = _bin_dir()
    if bin_dir is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(
                "PostgreSQL is not installed: .ci/run installs Debian's 'postgresql' package"
            )
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); CI runs this test")
    root = Path(tempfile.mkdtemp(prefix="esnotebook-pg-"))
    data = root / "data"
    user = _USER if os.geteuid() == 0 else os.environ.get("USER") or "postgres"
    if os.geteuid() == 0:
        shutil.chown(root, _USER)
    root.chmod(0o700)
    port = _free_port()
    log = root / "server.log"
    pg_ctl = str(bin_dir / "pg_ctl")
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        options = f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run([pg_ctl, "start", "-w", "-t", "60", "-D", str(data), "-l", str(log), "-o", options])
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield PostgresServer("127.0.0.1", port, user)
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "stop", "-D", str(data), "-m", "immediate", "-w"]),
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
