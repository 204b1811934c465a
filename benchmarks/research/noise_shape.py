"""Is the shape of the head's noise what gives the remaining misses away? Two research fits, not defaults.

    PYTHONPATH=. python benchmarks/research/noise_shape.py two_component methylation,fractions,denoised 1,2,3
    PYTHONPATH=. python benchmarks/research/noise_shape.py low_rank denoised 1
    PYTHONPATH=. python benchmarks/research/noise_shape.py latent_source methylation 1
    -> one JSON line per unit and variant; all of them in benchmarks/results/research/noise_shape.json

latent_source (methylation): first, whether the latent draws or the head's noise give the cells away. The
study's in-sample model (fit_vae's defaults) generates from its fitted latent mixtures (`gmm`, the package), at
temperature 0.7 (`gmm_t0.7`), from the training cells' own latent means (`training_means`: a latent code known
to be real) and from those means jittered by 0.3 of each latent dimension's sd; the same head draws the noise.

two_component (methylation): log_hurdle draws one Gaussian per value on log2(x / s + 1), and methylation's
generated cells hold too many values near their genes' maxima (the per-cell maximum alone tells them apart at
0.87). Real posterior ratios are a scale mixture: a gene covered by a few cytosines stays near the nucleus' prior
(exactly 1 when uncovered), a well-covered one spreads. The package's `mixture` head (two Gaussians per gene and
cell, nothing below the gene's minimum) is trained on the same scaled log, next to the hurdle, on a copy of the
data logged as log_hurdle logs it (s = the median non-zero value), and both models' cells are mapped back,
s * (2^y - 1), and scored as the study scores them: in-sample against all cells, held-out against the other
half of the seed's split (with the same-size augmentation gains). No per-gene cap (log_hurdle's cap is what the
package adds; here both heads go without it).

low_rank (denoised): real denoised cells carry almost no independent per-gene noise, so a sampled head's noise
gives them away and bce's decoder mean lacks variance. Here bce's cells get noise with the covariance of the
training cells' residuals (the values less the decoder mean at each cell's own latent mean) along their first k
principal components, the rest of each gene's residual variance independent (k = 0: independent noise only),
added on the values' own (linear) scale and clipped at 0; `mean` is bce's cells as they are.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks import harness
from benchmarks.quality import EVAL_SEED, Dataset, clean, write_atomic
from benchmarks.research.common import Store, half_split, score_as_study, score_heldout, setup

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "research" / "noise_shape.json"
SHOWN = ("auc", "keep", "corr", "zero_frac_gen", "zero_frac_real", "var_ratio_median", "auc_cell_max")
TWO_COMPONENT_HEADS = ("hurdle", "mixture")
RANKS = (0, 5, 20, 50)


def in_values(x: np.ndarray, labels: Any) -> Any:
    """Cells in the input's values, as the study's scoring takes a GeneratedCells."""
    return SimpleNamespace(x_gen=x.astype(np.float32), y_gen=labels, value_space="none", output_space="none")


def scaled_log_copy(adata: Any, seed: int) -> tuple[Any, float]:
    """A copy of `adata` with X = log2(x / s + 1), s as log_hurdle chooses it."""
    from vaexprs.data.preprocess import positive_median, scaled_log

    x = harness.dense(adata.X).astype(np.float64)
    scale = positive_median(x, seed)
    logged = adata.copy()
    logged.X = scaled_log(x, scale)
    return logged, scale


def two_component(ds: Any, seed: int) -> list[dict[str, Any]]:
    """Hurdle and mixture on the scaled log, in-sample and on the seed's held-out half."""
    import vaexprs

    rows = []
    tr, te, train_ad, want = half_split(ds, seed)
    for unit, adata in (("insample", ds.adata), ("heldout", train_ad)):
        logged, scale = scaled_log_copy(adata, seed)
        for head in TWO_COMPONENT_HEADS:
            started = time.perf_counter()
            result = vaexprs.fit_vae(logged, "cell_type", seed=seed, normalize="none", likelihood=head)
            fit_s = time.perf_counter() - started
            request = {"num_samples": adata.n_obs} if unit == "insample" else {"labels": want}
            gen = vaexprs.gen_exprs(result, seed=seed, **request)
            y = np.asarray(gen.x_gen, dtype=np.float64)
            cells = in_values(scale * (np.exp2(np.maximum(y, 0.0)) - 1.0), gen.y_gen)
            if unit == "insample":
                m = {k: score_as_study(ds, cells)[k] for k in SHOWN}
            else:
                m = score_heldout(ds, cells, tr, te, train_ad, seed, SHOWN)
            rows.append({"unit": unit, "variant": f"{head}_scaled_log", "fit_s": fit_s, "metrics": m})
    return rows


def residual_noise(result: Any, adata: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """bce's residuals on its training cells (values less the decoder mean at each cell's latent mean): their
    principal variances, components and per-gene variances."""
    import torch

    x = harness.dense(adata.X).astype(np.float32)
    classes = list(result.preprocessor.labels.classes)
    codes = np.array([classes.index(v) for v in np.asarray(adata.obs["cell_type"]).astype(str)])
    onehot = torch.from_numpy(np.eye(len(classes), dtype=np.float32)[codes])
    model, scaler = result.model.eval(), result.preprocessor.scaler
    with torch.no_grad():
        z = model.inference(torch.from_numpy(scaler.transform(x)), onehot, sample=False)["z_mean"]
        mean = torch.sigmoid(model.generative(z, onehot)["logits"]).numpy() * scaler.output_scale + scaler.minimum
    residual = x.astype(np.float64) - mean
    residual -= residual.mean(0)
    _, sv, components = np.linalg.svd(residual, full_matrices=False)
    return sv**2 / (residual.shape[0] - 1), components, residual.var(0)


def with_noise(cells: np.ndarray, noise: tuple[np.ndarray, np.ndarray, np.ndarray], k: int, seed: int) -> np.ndarray:
    variances, components, gene_var = noise
    rng = np.random.default_rng(seed)
    low = (rng.standard_normal((cells.shape[0], k)) * np.sqrt(variances[:k])) @ components[:k] if k else 0.0
    rest = np.maximum(gene_var - (variances[:k, None] * components[:k] ** 2).sum(0), 0.0)
    return np.maximum(cells + low + rng.standard_normal(cells.shape) * np.sqrt(rest), 0.0)


def low_rank(ds: Any, seed: int) -> list[dict[str, Any]]:
    """bce's cells as they are and with residual noise of rank k, in-sample and on the seed's held-out half."""
    import vaexprs

    rows = []
    tr, te, train_ad, want = half_split(ds, seed)
    for unit, adata in (("insample", ds.adata), ("heldout", train_ad)):
        started = time.perf_counter()
        result = vaexprs.fit_vae(adata, "cell_type", seed=seed, likelihood="bce")
        fit_s = time.perf_counter() - started
        noise = residual_noise(result, adata)
        request = {"num_samples": adata.n_obs} if unit == "insample" else {"labels": want}
        gen = vaexprs.gen_exprs(result, seed=seed, **request)
        mean = np.asarray(gen.x_gen, dtype=np.float64)
        for variant, k in (("mean", None), *((f"rank{k}", k) for k in RANKS)):
            cells = in_values(mean if k is None else with_noise(mean, noise, k, seed), gen.y_gen)
            if unit == "insample":
                m = {q: score_as_study(ds, cells)[q] for q in SHOWN}
            else:
                m = score_heldout(ds, cells, tr, te, train_ad, seed, SHOWN)
            rows.append({"unit": unit, "variant": variant, "fit_s": fit_s, "metrics": m})
    return rows


class TrainingMeans:
    """A latent sampler that draws training cells' own latent means (of the requested label), optionally
    jittered: the `sample` of vaexprs.bundle.sampler.LatentSampler."""

    def __init__(self, sampler: Any, latent: np.ndarray, codes: np.ndarray, jitter: float = 0.0) -> None:
        self.latent_dim, self.mixtures = sampler.latent_dim, sampler.mixtures
        self.latent, self.codes, self.jitter = latent, codes, jitter

    def sample(self, codes: Any, n: int, rng: np.random.Generator, kind: str = "gmm", temperature: float = 1.0) -> Any:
        z = np.empty((n, self.latent_dim))
        for code in np.unique(codes):
            rows = codes == code
            z[rows] = self.latent[rng.choice(np.flatnonzero(self.codes == code), int(rows.sum()))]
        if self.jitter:
            z += rng.standard_normal(z.shape) * self.jitter * self.latent.std(0)
        return z.astype(np.float32)


def latent_source(ds: Any, seed: int) -> list[dict[str, Any]]:
    """The in-sample model's cells from four latent sources, the head's noise drawn alike."""
    import vaexprs

    started = time.perf_counter()
    result = vaexprs.fit_vae(ds.adata, "cell_type", seed=seed)
    fit_s = time.perf_counter() - started
    classes = list(result.preprocessor.labels.classes)
    codes = np.array([classes.index(v) for v in np.asarray(ds.adata.obs["cell_type"]).astype(str)])
    latent = np.asarray(result.latent, dtype=np.float64)
    fitted, rows = result.sampler, []
    for variant, sampler, temperature in (
        ("gmm", fitted, 1.0),
        ("gmm_t0.7", fitted, 0.7),
        ("training_means", TrainingMeans(fitted, latent, codes), 1.0),
        ("training_means_jitter0.3", TrainingMeans(fitted, latent, codes, 0.3), 1.0),
    ):
        result.sampler = sampler
        gen = vaexprs.gen_exprs(result, num_samples=ds.adata.n_obs, seed=seed, temperature=temperature)
        metrics = score_as_study(ds, gen)
        rows.append({"unit": "insample", "variant": variant, "head": result.model_config.likelihood,
                     "fit_s": fit_s, "metrics": {k: metrics[k] for k in SHOWN}})  # fmt: skip
    result.sampler = fitted
    return rows


EXPERIMENTS = {"latent_source": latent_source, "two_component": two_component, "low_rank": low_rank}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in EXPERIMENTS:
        print(f"usage: noise_shape.py {{{','.join(EXPERIMENTS)}}} SET[,SET...] SEED[,SEED...]", file=sys.stderr)
        return 2
    setup()
    store = Store("noise_shape")
    experiment = argv[0]
    for name in argv[1].split(","):
        ds = Dataset(name, 0)
        ds.ref = harness.reference(ds.real, ds.labels, seed=EVAL_SEED)
        for seed in (int(s) for s in argv[2].split(",")):
            key = f"{experiment}_{name}_seed{seed}"
            if not store.done(key):
                rows = [
                    {"experiment": experiment, "dataset": name, "seed": seed, **row}
                    for row in EXPERIMENTS[experiment](ds, seed)
                ]
                store.put(key, {"rows": clean(rows)})
            for row in store.get(key)["rows"]:
                print(json.dumps(row), flush=True)
    rows = [row for record in store.all().values() for row in record["rows"]]
    write_atomic(OUT, json.dumps(clean(rows), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
