"""MLproject `export`: a checkpoint (file or runs:/ URI) -> ONNX bundle, written locally and logged to the run.

mlflow run . -e export -P model=runs:/<RUN_ID>/checkpoint/model.pt -P output=outputs/bundle --env-manager local
"""

from __future__ import annotations

import argparse

from _common import cli, finish, output_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="model.pt, runs:/RUN_ID/checkpoint/model.pt or models:/NAME@ALIAS")
    p.add_argument("--output", default="outputs/bundle")
    a = p.parse_args()

    from vaexprs.tracking import run_scope

    with run_scope(run_name="export") as run:
        out = output_path(a.output)
        finish(cli(["export", a.model, "-o", out, "--force"]))
        import mlflow

        mlflow.log_artifacts(str(out), "bundle")
        print(f"bundle: {out} (artifact runs:/{run.info.run_id}/bundle)")


if __name__ == "__main__":
    main()
