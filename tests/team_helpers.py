"""A team's tracking set-up, for real: a throwaway PostgreSQL cluster on loopback, and an ``mlflow
server`` whose backend store is a database in it (tests/test_team.py).

The cluster is Debian's ``postgresql`` (``tests/run.sh`` installs it): ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/<version>/bin``, password authentication on 127.0.0.1 only. PostgreSQL
refuses to run as root, so as root the cluster belongs to the ``postgres`` system user (``runuser``),
in a folder of its own (pytest's folders under ``/tmp/pytest-of-root`` are closed to other users).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import free_port

PG_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL = "apt-get install -y postgresql (tests/run.sh does it)"


class PostgresUnavailable(RuntimeError):
    """The machine cannot run a PostgreSQL cluster for the tests; the message says how to fix it."""


def postgres_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    found = [
        p
        for p in Path("/").glob(PG_GLOB.lstrip("/"))
        if all((p / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres"))
    ]
    if not found:
        raise PostgresUnavailable(
            f"PostgreSQL server binaries (initdb, pg_ctl, postgres) are not in {PG_GLOB}: {INSTALL}"
        )
    return max(found, key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")])


@dataclass
class Postgres:
    """A running cluster with one database owned by one password-authenticated user."""

    bindir: Path
    base: Path  # the cluster's folder: data/, postgres.log; removed by stop() when we made it
    port: int
    run_as: list[str]  # the command prefix that runs a server binary as the cluster's owner
    superuser_password: str
    user: str = "mlflow"
    password: str = ""
    database: str = "mlflow"
    owned_base: bool = False

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI ``mlflow server --backend-store-uri`` takes. The driver is named: a bare
        ``postgresql://`` means psycopg2 to SQLAlchemy 2.0 and psycopg (3) to 2.1."""
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def connect(self, *, superuser: bool = False, autocommit: bool = False) -> Any:
        """A psycopg connection over TCP with a password, as the tracking server makes."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres" if superuser else self.user,
            password=self.superuser_password if superuser else self.password,
            dbname="postgres" if superuser else self.database,
            connect_timeout=10,
            autocommit=autocommit,
        )

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.base / "postgres.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: disconnect clients, shut down cleanly; then remove our folder."""
        pg_ctl = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.base / "data")]
        with contextlib.suppress(PostgresUnavailable, subprocess.SubprocessError, OSError):
            _run([*pg_ctl, "stop", "-m", "fast", "-w", "-t", "60"])
        if self.owned_base:
            shutil.rmtree(self.base, ignore_errors=True)


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0:
        raise PostgresUnavailable(
            f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def start_postgres(tmp: Path) -> Postgres:
    """``initdb`` a cluster, start it on a free loopback port, create the ``mlflow`` user and database.

    As root the cluster runs as the ``postgres`` system user in a folder it owns under the system's
    temporary folder (``tmp`` is not reachable for it); otherwise it runs as the current user in ``tmp``.
    """
    bindir = postgres_bindir()
    if os.geteuid() == 0:
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                f"running as root, and there is no `postgres` system user to run PostgreSQL as: {INSTALL}"
            ) from None
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root, and `runuser` (util-linux) is missing")
        base, owned = Path(tempfile.mkdtemp(prefix="nbtrack-pg-")), True
        os.chown(base, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    else:
        base, owned, run_as = tmp, False, []
        base.mkdir(parents=True, exist_ok=True)
    pg = Postgres(
        bindir=bindir,
        base=base,
        port=free_port(),
        run_as=run_as,
        superuser_password=secrets.token_hex(12),
        password=secrets.token_hex(12),
        owned_base=owned,
    )
    try:
        pwfile = base / "superuser.pw"
        pwfile.write_text(pg.superuser_password + "\n")
        if owned:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        initdb = [*run_as, str(bindir / "initdb"), "-D", str(base / "data"), "-U", "postgres"]
        _run(
            [*initdb, "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale", "--no-sync"]
        )
        pwfile.unlink()
        # Loopback TCP only; the socket in our own folder (not /var/run/postgresql); no fsync: it is
        # thrown away after the session.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {pg.port} -c unix_socket_directories={base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "postgres.log")]
        _run([*pg_ctl, "-o", options, "-w", "-t", "60", "start"])
    except PostgresUnavailable as exc:
        pg.stop()
        raise PostgresUnavailable(f"{exc}\n{pg.log_tail()}") from None
    try:
        from psycopg import sql

        # autocommit: CREATE DATABASE refuses to run inside a transaction
        with pg.connect(superuser=True, autocommit=True) as conn, conn.cursor() as cur:
            # DDL takes no bind parameters: the password goes in as a quoted literal
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(pg.user), sql.Literal(pg.password)
                )
            )
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(pg.database), sql.Identifier(pg.user)
                )
            )
    except Exception:
        pg.stop()
        raise
    return pg


def server_cli(url: str, *args: str, spool: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``nbtrack ARGS`` in a fresh process against the tracking server ``url``, with its own spool."""
    import sys

    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "NBTRACK_SPOOL_DIR": str(spool)}
    return subprocess.run(
        [sys.executable, "-m", "nbtrack.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
