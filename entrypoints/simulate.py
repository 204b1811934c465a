"""MLproject `simulate`: write the VAExprs vignette's simulated data and log it to the run.

mlflow run . -e simulate -P groups=3 -P cells=100 -P genes=1000 --env-manager local
"""

from __future__ import annotations

import argparse

from _common import cli, finish, output_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--groups", type=int, default=3)
    p.add_argument("--cells", type=int, default=100)
    p.add_argument("--genes", type=int, default=1000)
    p.add_argument("--deg", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--output", default="outputs/simulated.h5ad")
    a = p.parse_args()

    from vaexprs.tracking import run_scope

    with run_scope(run_name="simulate") as run:
        out = output_path(a.output)
        argv = ["simulate", "-o", out, "--groups", a.groups, "--cells", a.cells, "--genes", a.genes]
        finish(cli([*argv, "--deg", a.deg, "--seed", a.seed, "--force"]))
        import mlflow

        mlflow.log_artifact(str(out), "data")
        print(f"simulated data: {out} (artifact runs:/{run.info.run_id}/data/{out.name})")


if __name__ == "__main__":
    main()
