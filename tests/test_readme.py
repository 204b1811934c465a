"""The README's command-line and Python blocks run as written, top to bottom, in an empty folder.

Only the sizes the README names are made small: `--epochs 3` for `train`, `-n 2000` for the million cells,
`epochs=3` for each `fit_vae`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def block(after_heading: str, lang: str, contains: str = "") -> str:
    """The first ```lang block after the heading (that contains `contains`)."""
    text = README.read_text()
    start = text.index(after_heading)
    for match in re.finditer(rf"```{lang}\n(.*?)```", text[start:], flags=re.S):
        if contains in match.group(1):
            return match.group(1)
    raise AssertionError(f"no ```{lang} block with {contains!r} after {after_heading!r} in README.md")


def command_lines() -> list[str]:
    lines = []
    for line in block("## Command line", "bash").splitlines():
        line = line.split("  #")[0].strip()
        if not line:
            continue
        if line.startswith("vaexprs train"):
            line += " --epochs 3"
        lines.append(line.replace("-n 1000000", "-n 2000"))
    return lines


@pytest.mark.slow
def test_command_line_block_runs_in_an_empty_folder(tmp_path):
    exe = shutil.which("vaexprs")
    if exe is None:
        pytest.skip("the vaexprs command is not on PATH (make test puts .venv/bin there)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    for line in command_lines():
        proc = subprocess.run(shlex.split(line), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"`{line}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    for name in ("sim.h5ad", "gen.h5ad", "group2.h5ad", "gen.csv", "big.h5ad", "metrics.json", "model.pt", "mlflow.db"):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())  # evaluate compares every label, both sides
    assert set(metrics["label_centroid_corr"]) == {"group1", "group2", "group3"}
    assert isinstance(metrics["tstr_accuracy"], float)  # a classifier trained on every generated label (3 epochs here)
    assert (tmp_path / "bundle" / "bundle.json").is_file() and (tmp_path / "bundle2" / "decoder.onnx").is_file()

    snippet = block("## Python", "python", contains="import scanpy")
    pytest.importorskip("scanpy")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(snippet, "README.md (scanpy)", "exec"), {})
    finally:
        os.chdir(cwd)


@pytest.mark.slow
def test_python_block_runs(tmp_path, monkeypatch):
    code = block("## Python", "python", contains="import vaexprs")
    code = code.replace('fit_vae(adata, "cell_type")', 'fit_vae(adata, "cell_type", epochs=3)')
    code = code.replace("epochs=100", "epochs=3")
    assert code.count("epochs=3") == code.count("fit_vae(")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md (Python)", "exec"), scope)
    assert scope["gen"].x_gen.shape == (300, 1000) and set(scope["gen"].y_gen) == {"group2"}
    assert scope["result"].model_config.likelihood in {"hurdle", "bce"} and scope["result"].selection
    assert scope["vaexprs_bce"].model_config.latent_dim == 2 and (tmp_path / "model.pt").is_file()
