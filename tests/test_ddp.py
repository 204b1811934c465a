"""Training under torchrun: two CPU processes (gloo) train one model; rank 0 alone exports, logs and registers;
from a backed file, each rank reads its own share of every epoch."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TORCHRUN = Path(sys.executable).with_name("torchrun")


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(OMP_NUM_THREADS="1", MLFLOW_TRACKING_URI=f"sqlite:///{cwd}/mlflow.db")
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "vaexprs", "train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_torchrun_two_processes_train_one_model_and_register_it_once(tmp_path, small_sim):
    if not TORCHRUN.exists() and shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed beside this Python")
    small_sim.write_h5ad(tmp_path / "cells.h5ad")
    common = ["cells.h5ad", "--epochs", "4", "--hidden", "16", "--likelihood", "bce", "--seed", "3"]
    done = torchrun([*common, "-o", "b1", "--register", "ddp"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained a CVAE") == 1  # rank 0 speaks for both
    # each rank streams its own share of every epoch from disk (--backed); same seed, same ranks: same model
    backed = [torchrun([*common, "--backed", "-o", name], tmp_path) for name in ("b2", "b3")]
    assert all(done.returncode == 0 for done in backed), backed[0].stderr[-3000:] + backed[1].stderr[-3000:]
    assert sha(tmp_path / "b2" / "decoder.onnx") == sha(tmp_path / "b3" / "decoder.onnx")

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    (version,) = client.search_model_versions("name='ddp'")
    assert version.run_id == runs[0].info.run_id
    assert [h.step for h in client.get_metric_history(runs[0].info.run_id, "loss")] == [1, 2, 3, 4]


# one rank of a hand-made process group (what torchrun sets up): fit_vae on the first N cells of the simulated
# data, N given per rank; a VaexprsError is printed as the CLI prints it
RANK = textwrap.dedent(
    """
    import os, sys
    import vaexprs
    from vaexprs.errors import VaexprsError

    cells = int(sys.argv[1 + int(os.environ["RANK"])])
    data = vaexprs.simulate(groups=2, cells=20, genes=30, deg=5, seed=1)[:cells]
    labels = "cell_type" if sys.argv[-1] == "cvae" else None
    try:
        vaexprs.fit_vae(data, labels, likelihood="bce", hidden=(8,), epochs=2, progress=False)
    except VaexprsError as exc:
        print(f"error: {exc}")
        sys.exit(2)
    """
)


def ranks(cells: list[int], model: str) -> list[subprocess.CompletedProcess]:
    """Run RANK in len(cells) processes joined in one gloo group; every rank's outcome."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(len(cells))}
    args = [sys.executable, "-c", RANK, *map(str, cells), model]
    procs = [
        subprocess.Popen(args, env={**base, "RANK": str(r), "LOCAL_RANK": str(r), "OMP_NUM_THREADS": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in range(len(cells))
    ]  # fmt: skip
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        outcomes.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return outcomes


def test_ranks_that_read_different_data_are_refused_on_every_rank():
    """Each rank reads its own copy of the data: with other cell counts gloo aborted in C++ mid-epoch (exit 134),
    with the same counts the ranks would have averaged the gradients of different data."""
    outcomes = ranks([40, 30], "cvae")
    for done in outcomes:
        assert done.returncode == 2, done.stderr[-2000:]
        assert "torchrun's ranks read different data (cells: 40 on rank 0, 30 on rank 1" in done.stdout, done.stdout


def test_fewer_cells_than_ranks_is_refused_not_trained_to_a_loss_of_zero():
    """Three ranks, two cells: each rank's share of an epoch was empty, no step ran, and the untrained model was
    written with a loss of 0 and exit 0."""
    outcomes = ranks([2, 2, 2], "vae")
    for done in outcomes:
        assert done.returncode == 2, done.stderr[-2000:]
        assert "2 training cell(s) cannot be shared among 3 torchrun ranks; use fewer ranks" in done.stdout
