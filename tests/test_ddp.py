"""Training under torchrun: two CPU processes (gloo) train one model; rank 0 alone exports, logs and registers;
from a backed file, each rank reads its own share of every epoch."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
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
