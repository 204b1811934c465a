"""MLproject `generate`: cells from a bundle or a registered model, written to a file and logged to the run.

mlflow run . -e generate -P model=models:/vaexprs@champion -P n=1000 --env-manager local
"""

from __future__ import annotations

import argparse

from _common import cli, finish, optional, output_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="models:/vaexprs@champion")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--label", default="")
    p.add_argument("--per-label", default="")
    p.add_argument("--sampler", default="gmm")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--output", default="outputs/generated.h5ad")
    a = p.parse_args()

    from vaexprs.tracking import run_scope

    with run_scope(run_name="generate") as run:
        out = output_path(a.output)
        counts = optional("--per-label", a.per_label) or ["-n", a.n, *optional("--label", a.label)]
        argv = ["generate", a.model, "-o", out, *counts, "--sampler", a.sampler, "--seed", a.seed, "--force"]
        finish(cli(argv))
        import mlflow

        mlflow.log_artifact(str(out), "generated")
        print(f"generated cells: {out} (artifact runs:/{run.info.run_id}/generated/{out.name})")


if __name__ == "__main__":
    main()
