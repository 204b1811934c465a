"""MLproject `main` (the default): the whole job on the vignette's simulated data, as one parent run with a
child run per step: simulate -> train (ONNX export, tracking, registration) -> generate from the registry.

    mlflow run . --env-manager local                     # what `make demo` runs; about a minute on 2 cores
    mlflow run . -P model=vae -P epochs=30 -P alias=champion --env-manager local

The steps run in this process, as nested MLflow runs, rather than as `mlflow.projects.run` sub-projects: the
environment that `--env-manager` built (or chose: local) for this entry point is the one every step needs, so
there is nothing to pass on and nothing to rebuild, and torch and mlflow are imported once instead of once per
step (each sub-project would also start its own interpreter and re-resolve the environment). The steps keep
their own runs, so the UI shows what each one logged; the standalone entry points (simulate, train, generate,
evaluate) run the same code one step at a time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import cli, finish, one_line_errors, setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--groups", type=int, default=3)
    p.add_argument("--cells", type=int, default=100)
    p.add_argument("--genes", type=int, default=1000)
    p.add_argument("--deg", type=int, default=100)
    p.add_argument("--model", default="cvae")
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--hidden", default="512")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--likelihood", default="bce")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--register", default="vaexprs", help="registered model name; empty = do not register")
    p.add_argument("--alias", default="", help="point this alias at the new version; empty = leave aliases")
    p.add_argument("--n-cells", type=int, default=300)
    p.add_argument("--out-dir", default="outputs")
    a = p.parse_args()
    started = time.perf_counter()
    setup_logging()

    import mlflow

    from vaexprs.generate import generate_to_file
    from vaexprs.tracking import ensure_tracking_uri, promote, run_scope
    from vaexprs.workflow import TrainOptions, train_pipeline

    out_dir = Path(a.out_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data, generated = out_dir / "simulated.h5ad", out_dir / "generated.h5ad"
    with run_scope(experiment="vaexprs", run_name="main") as parent, one_line_errors():
        with run_scope(run_name="simulate", nested=True) as sim_run:
            sizes = ["--groups", a.groups, "--cells", a.cells, "--genes", a.genes, "--deg", a.deg]
            finish(cli(["simulate", "-o", data, *sizes, "--seed", a.seed, "--force"]))
            mlflow.log_artifact(str(data), "data")

        with run_scope(run_name="train", nested=True) as train_run:
            options = TrainOptions(
                data=str(data), model=a.model, latent_dim=a.latent_dim, hidden=a.hidden, epochs=a.epochs,
                batch_size=a.batch_size, beta=a.beta, likelihood=a.likelihood, patience=a.patience, lr=a.lr,
                seed=a.seed, track=True, register=a.register or None,
            )  # fmt: skip
            outcome = train_pipeline(options)
        model_uri = outcome.model_uri or f"runs:/{train_run.info.run_id}/bundle"
        if a.alias and outcome.model_version:
            promote(a.register, outcome.model_version, a.alias)

        with run_scope(run_name="generate", nested=True) as gen_run:
            summary = generate_to_file(model_uri, generated, n=a.n_cells, seed=a.seed, force=True)
            mlflow.log_artifact(str(generated), "generated")
            mlflow.log_params({"model_uri": model_uri, "n_cells": summary["n_cells"], "seed": a.seed})

        mlflow.set_tags({"vaexprs.model_uri": model_uri, "vaexprs.generated": str(generated)})
        uri = ensure_tracking_uri()
        print(f"\n== vaexprs main finished in {time.perf_counter() - started:.0f} s")
        print(f"MLflow run:       {parent.info.run_id} (steps: simulate {sim_run.info.run_id}, ", end="")
        print(f"train {train_run.info.run_id}, generate {gen_run.info.run_id})")
        print(f"                  tracking store {uri}; browse it with: mlflow ui --backend-store-uri {uri}")
        if outcome.model_version:
            print(f"registered model: {model_uri}", end="")
            if a.alias:
                print(f" = models:/{a.register}@{a.alias}")
            else:
                print(f" (promote it: vaexprs promote {a.register} --version {outcome.model_version} --alias champion)")
        else:
            print(f"model:            {model_uri} (not registered)")
        print(f"generated cells:  {generated} ({summary['n_cells']} cells; ", end="")
        print(f"also runs:/{gen_run.info.run_id}/generated/{generated.name})")


if __name__ == "__main__":
    main()
