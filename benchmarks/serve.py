"""Served generation (`mlflow models serve` of a registered vaexprs model) against the CLI, in one run.

    python benchmarks/serve.py                    # 2,000 genes, requests of 10,000 cells, 3 rounds
    python benchmarks/serve.py --genes 500 --n 2000 --rounds 1
    -> JSON on stdout and in benchmarks/results/serve.json

A CVAE (hidden 256, latent 10, fitted for one epoch on random counts: the weights' values do not matter for
speed) is exported, logged as the pyfunc generator and registered in a temporary sqlite store. The server
(`mlflow models serve --env-manager local`, one worker) is started once and warmed up with one request; then,
alternating per round: one POST /invocations asking for N cells (`dataframe_split`, the response parsed as
JSON, as a client does), and one `vaexprs generate BUNDLE -n N -o x.npy` subprocess (start-up included).
Cells per second are compared within the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(model_uri: str, env: dict[str, str], cwd: Path) -> Iterator[str]:
    port = free_port()
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (cwd / "server.log").open("w")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/ping", timeout=2).read()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {(cwd / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def request(url: str, n: int, seed: int) -> tuple[float, int]:
    body = {"dataframe_split": {"columns": ["n", "seed"], "data": [[n, seed]]}}
    req = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as response:
        rows = json.loads(response.read())["predictions"]
    return time.perf_counter() - start, len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--n", type=int, default=10_000, help="cells per request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = parser.parse_args(argv)
    import numpy as np

    import vaexprs

    with tempfile.TemporaryDirectory(prefix="vaexprs-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow models serve starts uvicorn from PATH
        os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
        rng = np.random.default_rng(0)
        x = rng.poisson(1.0, (200, args.genes)).astype(np.float32)
        y = np.repeat(["a", "b", "c", "d"], 50)
        result = vaexprs.fit_vae(x, y, likelihood="bce", hidden=(256,), latent_dim=10, epochs=1, progress=False)
        bundle = vaexprs.export_bundle(result, tmp / "bundle")
        import mlflow

        from vaexprs.generate.pyfunc import log_generator_model

        with mlflow.start_run():
            log_generator_model(bundle, registered_model_name="bench")
        served_s, cli_s = [], []
        with served("models:/bench/1", env, tmp) as url:
            request(url, min(args.n, 100), 0)  # warm-up: the session is created once per worker process
            for r in range(args.rounds):
                seconds, rows = request(url, args.n, r + 1)
                assert rows == args.n, rows
                served_s.append(seconds)
                out = tmp / f"x{r}.npy"
                start = time.perf_counter()
                subprocess.run(
                    [str(BIN / "vaexprs"), "generate", str(bundle), "-n", str(args.n), "--seed", str(r + 1),
                     "-o", str(out), "-q"], check=True, env=env,
                )  # fmt: skip
                cli_s.append(time.perf_counter() - start)
                out.unlink()
    best_served, best_cli = min(served_s), min(cli_s)
    report = {
        "config": {
            "genes": args.genes,
            "hidden": 256,
            "latent": 10,
            "cells_per_request": args.n,
            "rounds": args.rounds,
        },
        "served_seconds": served_s,
        "cli_seconds": cli_s,
        "served_cells_per_s": args.n / best_served,
        "cli_cells_per_s": args.n / best_cli,
        "ratio_served_over_cli": best_cli / best_served,
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")},
    }
    from vaexprs.files import write_json_atomic

    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
