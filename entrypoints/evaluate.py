"""MLproject `evaluate`: score generated cells against real ones; the metrics go to the run as metrics and
as metrics.json, the comparison plots as artifacts.

    mlflow run . -e evaluate -P real=outputs/simulated.h5ad -P gen=outputs/generated.h5ad --env-manager local
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import cli, finish, flat_metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--real", required=True)
    p.add_argument("--gen", required=True)
    p.add_argument("--label-key", default="cell_type")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    from vaexprs.tracking import run_scope

    with run_scope(run_name="evaluate"), tempfile.TemporaryDirectory(prefix="vaexprs-eval-") as tmp:
        metrics_json, plots = Path(tmp) / "metrics.json", Path(tmp) / "plots"
        argv = ["evaluate", a.real, a.gen, "--label-key", a.label_key, "--seed", a.seed]
        finish(cli([*argv, "-o", metrics_json, "--plots", plots]))
        import mlflow

        mlflow.log_metrics(dict(flat_metrics(json.loads(metrics_json.read_text()))))
        mlflow.log_artifact(str(metrics_json))
        if plots.is_dir():
            mlflow.log_artifacts(str(plots), "plots")


if __name__ == "__main__":
    main()
