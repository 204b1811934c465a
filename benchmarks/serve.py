"""Served generation (`mlflow models serve` of a registered vaexprs model) against the CLI, in one run.

    python benchmarks/serve.py                    # 2,000 genes, requests of 10,000 cells, 3 rounds, bce
    python benchmarks/serve.py --formats npz --rounds 5
    python benchmarks/serve.py --likelihood nb --formats npz,csr --out benchmarks/results/serve_nb.json
    -> JSON on stdout and in benchmarks/results/serve.json

A CVAE (hidden 256, latent 10, fitted for one epoch on random counts: the weights' values do not matter for
speed; Poisson(1) counts for bce, sparse Poisson(0.15) counts, ~86% zeros like UMI data, for a count head) is
exported, logged as the pyfunc generator and registered in a temporary sqlite store. The server
(`mlflow models serve --env-manager local`, one worker) is started once and warmed up with one request per
answer format; then, alternating per round: one POST /invocations per format asking for N cells
(`dataframe_split`, params {"format": F} unless F is records), the answer decoded as a client does (JSON, then
for npz/csr base64 and numpy/scipy: the cells as an array), and one `vaexprs generate BUNDLE -n N -o x.npy`
subprocess (start-up included). Cells per second are compared within the run. Where the served time goes is
measured in-process on the same model and cells: predict (generation, then the answer's encoding) and MLflow's
JSON serialisation of the answer; the rest of a request's wall time is HTTP and the scoring server.
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
from typing import Any

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


def request(url: str, n: int, seed: int, answer: str = "records") -> dict[str, float]:
    """One request, timed: until the answer's bytes are in, then until the cells are decoded (a (n, G) array)."""
    import base64
    import io

    import numpy as np
    import scipy.sparse

    body: dict[str, Any] = {"dataframe_split": {"columns": ["n", "seed"], "data": [[n, seed]]}}
    if answer != "records":
        body["params"] = {"format": answer}
    req = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as response:
        raw = response.read()
    received = time.perf_counter()
    predictions = json.loads(raw)["predictions"]
    if answer == "records":
        cells = len(predictions)
    else:
        archive = io.BytesIO(base64.b64decode(predictions))
        x = scipy.sparse.load_npz(archive) if answer == "csr" else np.load(archive)["x"]
        cells = x.shape[0]
    done = time.perf_counter()
    return {"seconds": done - start, "received_s": received - start, "decode_s": done - received,
            "answer_mb": len(raw) / 1e6, "cells": cells}  # fmt: skip


def server_side(model_uri: str, n: int, seed: int, answer: str, repeats: int = 2) -> dict[str, float]:
    """In this process, on the same model: predict (generation + the answer's encoding) and MLflow's JSON
    serialisation of its result (what the scoring server does with it), best of `repeats`."""
    import io

    import mlflow.pyfunc
    import pandas as pd
    from mlflow.pyfunc.scoring_server import predictions_to_json

    model = mlflow.pyfunc.load_model(model_uri)
    frame = pd.DataFrame({"n": [n], "seed": [seed]})
    params = None if answer == "records" else {"format": answer}
    predict_s, json_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = model.predict(frame, params=params)
        predict_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        predictions_to_json(out, io.StringIO())
        json_s.append(time.perf_counter() - start)
    return {"predict_s": min(predict_s), "json_s": min(json_s)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--n", type=int, default=10_000, help="cells per request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--likelihood", default="bce", help="the model's head: bce (dense values) or nb/zinb (counts)")
    parser.add_argument(
        "--formats", default="records,npz", help="answer formats to request, comma-separated: records, npz, csr"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    import numpy as np

    import vaexprs

    with tempfile.TemporaryDirectory(prefix="vaexprs-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow models serve starts uvicorn from PATH
        os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
        rng = np.random.default_rng(0)
        rate = 1.0 if args.likelihood in ("bce", "mse") else 0.15  # count heads: UMI-like, mostly zeros
        x = rng.poisson(rate, (200, args.genes)).astype(np.float32)
        y = np.repeat(["a", "b", "c", "d"], 50)
        result = vaexprs.fit_vae(
            x, y, likelihood=args.likelihood, hidden=(256,), latent_dim=10, epochs=1, progress=False
        )
        bundle = vaexprs.export_bundle(result, tmp / "bundle")
        import mlflow

        from vaexprs.generate.pyfunc import log_generator_model

        with mlflow.start_run():
            log_generator_model(bundle, registered_model_name="bench")
        served_runs: dict[str, list[dict[str, float]]] = {f: [] for f in formats}
        cli_s = []
        with served("models:/bench/1", env, tmp) as url:
            for answer in formats:  # warm-up: the session is created once per worker process
                request(url, min(args.n, 100), 0, answer)
            for r in range(args.rounds):
                for answer in formats:
                    run = request(url, args.n, r + 1, answer)
                    assert run["cells"] == args.n, run
                    served_runs[answer].append(run)
                out = tmp / f"x{r}.npy"
                start = time.perf_counter()
                subprocess.run(
                    [str(BIN / "vaexprs"), "generate", str(bundle), "-n", str(args.n), "--seed", str(r + 1),
                     "-o", str(out), "-q"], check=True, env=env,
                )  # fmt: skip
                cli_s.append(time.perf_counter() - start)
                out.unlink()
        inside = {  # records: once (tens of seconds each)
            answer: server_side("models:/bench/1", args.n, 1, answer, repeats=1 if answer == "records" else 3)
            for answer in formats
        }
    best_cli = min(cli_s)
    per_format = {}
    for answer, runs in served_runs.items():
        best = min(runs, key=lambda run: run["seconds"])
        per_format[answer] = {
            "seconds": [run["seconds"] for run in runs],
            "best": best,
            "in_process": inside[answer],
            "cells_per_s": args.n / best["seconds"],
            "ratio_served_over_cli": best_cli / best["seconds"],
        }
    report = {
        "config": {
            "genes": args.genes,
            "hidden": 256,
            "latent": 10,
            "likelihood": args.likelihood,
            "cells_per_request": args.n,
            "rounds": args.rounds,
            "formats": formats,
        },
        "served": per_format,
        "cli_seconds": cli_s,
        "cli_cells_per_s": args.n / best_cli,
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
    }  # fmt: skip
    from vaexprs.files import write_json_atomic

    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
