"""MLproject `train`: `vaexprs train --track` in the run `mlflow run` opened (params, metrics, checkpoint,
ONNX bundle, history, plots), registered as a pyfunc when `register` names a model.

    mlflow run . -e train -P data=cells.h5ad -P model=cvae -P register=vaexprs --env-manager local
"""

from __future__ import annotations

import argparse

from _common import cli, finish, optional


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="", help="expression file; empty = the vignette's simulated data")
    p.add_argument("--register", default="", help="registered model name; empty = do not register")
    for name, kind, default in (
        ("label-key", str, "cell_type"),
        ("model", str, "vae"),
        ("latent-dim", int, 2),
        ("hidden", str, "512"),
        ("epochs", int, 100),
        ("batch-size", int, 32),
        ("beta", float, 1.0),
        ("likelihood", str, "bce"),
        ("normalize", str, "auto"),
        ("val-split", float, 0.0),
        ("patience", int, 10),
        ("monitor", str, "loss"),
        ("lr", float, 1e-3),
        ("seed", int, 1),
    ):
        p.add_argument(f"--{name}", type=kind, default=default)
    a = p.parse_args()
    argv: list[object] = ["train", a.data, "--track", *optional("--register", a.register)]
    for name in ("label_key", "model", "latent_dim", "hidden", "epochs", "batch_size", "beta", "likelihood"):
        argv += [f"--{name.replace('_', '-')}", getattr(a, name)]
    for name in ("normalize", "val_split", "patience", "monitor", "lr", "seed"):
        argv += [f"--{name.replace('_', '-')}", getattr(a, name)]
    finish(cli(argv))


if __name__ == "__main__":
    main()
