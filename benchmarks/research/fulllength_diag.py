"""Why are generated fulllength cells farther from the real centroid in PCA (auc_pca_distance 0.75)?

Fit once per data set with the study's defaults but likelihood="hurdle" (what auto chose everywhere), save the
checkpoint, then vary only the generation side: the latent sampler (BIC GMM = default, the training cells' own
latent means, shrunk single Gaussians, prior) x the decoder noise (sampled hurdle, sigma scaled, decoder mean).
Everything is scored with benchmarks.harness.score against all real cells (in-sample, as the study does).

    nice -n 19 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m benchmarks.research.fulllength_diag fit fulllength 1
    nice -n 19 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m benchmarks.research.fulllength_diag eval fulllength 1
    ... fit/eval yan 1, trajectory 1, fulllength 2;  `table` prints the markdown table of every eval JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import datasets, harness

OUT = Path("/tmp/fldiag")


def patch_cell_sigma() -> None:
    """Research prototype (env FLDIAG_CELL_SIGMA=1; the package is not edited): the hurdle head's sigma gets a
    per-cell factor from the decoder's hidden layer, sigma[c, g] = exp(log_sigma[g] + w . h[c] + b), zero-init
    (starts as the package's per-gene sigma), bounded by 3 tanh(./3) (FLDIAG_CELL_SIGMA_CLAMP=0: unbounded, as in the
    first fulllength run `_cs`, whose beta-10 twin went non-finite). Applied in the fit and the eval alike."""
    import torch
    from torch import nn

    from vaexprs.model.network import HurdleGaussianHead

    init, _ = HurdleGaussianHead.__init__, HurdleGaussianHead.forward

    def __init__(self: Any, n_hidden: int, config: Any) -> None:
        init(self, n_hidden, config)
        self.cell_log_sigma = nn.Linear(n_hidden, 1)
        nn.init.zeros_(self.cell_log_sigma.weight)
        nn.init.zeros_(self.cell_log_sigma.bias)

    def forward(self: Any, h: Any, library: Any = None) -> dict[str, Any]:
        cell = self.cell_log_sigma(h)
        if os.environ.get("FLDIAG_CELL_SIGMA_CLAMP", "1") == "1":  # bounded: a factor within e^-b..e^b
            bound = float(os.environ.get("FLDIAG_CELL_SIGMA_BOUND", "3"))
            cell = bound * torch.tanh(cell / bound)
        sigma = torch.exp(self.log_sigma[None, :] + cell)
        return {"mu": self.loc(h), "sigma": sigma, "pi_logit": self.dropout(h)}

    HurdleGaussianHead.__init__ = __init__
    HurdleGaussianHead.forward = forward


def patch_sigma_init() -> None:
    """Research prototype (env FLDIAG_SIGMA_INIT=1): start the hurdle head's per-gene log sigma at the log of the
    pooled within-label sd of each gene's non-zero model-space values, instead of 0 (sigma 1) whatever the
    data's scale. Adam moves log sigma by about lr per step, so sigma 5 (the vignette) is out of reach in 300
    epochs of 10 steps."""
    import torch

    from vaexprs.model import loop

    fit = loop.fit

    def patched(model: Any, train: Any, *args: Any, **kwargs: Any) -> Any:
        head = model.head
        if hasattr(head, "log_sigma"):
            x = train.preprocessor.scale_batch(np.asarray(train.matrix.toarray() if hasattr(train.matrix, "toarray")
                                                          else train.matrix, dtype=np.float32))  # fmt: skip
            codes = train.codes if train.codes is not None else np.zeros(x.shape[0], int)
            ss, dof = np.zeros(x.shape[1]), np.zeros(x.shape[1])
            for c in np.unique(codes):
                xc = x[codes == c]
                nz = xc > 0
                k = nz.sum(0)
                s = np.where(nz, xc, 0).sum(0)
                mean = np.divide(s, k, out=np.zeros_like(s, dtype=float), where=k > 0)
                ss += (np.where(nz, xc - mean, 0) ** 2).sum(0)
                dof += np.maximum(k - 1, 0)
            sd = np.sqrt(np.divide(ss, dof, out=np.full(x.shape[1], np.nan), where=dof > 0))
            fill = np.nanmedian(sd) if np.isfinite(sd).any() else 1.0
            sd = np.clip(np.where(np.isfinite(sd) & (sd > 0), sd, fill), 1e-2, None)
            with torch.no_grad():
                head.log_sigma.copy_(torch.from_numpy(np.log(sd).astype(np.float32)))
                if os.environ.get("FLDIAG_BIAS_INIT") == "1":  # output biases at the genes' non-zero mean, zero rate
                    nz = x > 0
                    k = nz.sum(0)
                    m = np.divide(np.where(nz, x, 0).sum(0), k, out=np.zeros(x.shape[1]), where=k > 0)
                    p0 = np.clip(1 - k / x.shape[0], 1e-3, 1 - 1e-3)
                    head.loc.bias.copy_(torch.from_numpy(m.astype(np.float32)))
                    head.dropout.bias.copy_(torch.from_numpy(np.log(p0 / (1 - p0)).astype(np.float32)))
            print(f"sigma init median {np.median(sd):.3g}", flush=True)
        return fit(model, train, *args, **kwargs)

    loop.fit = patched


# Both prototypes are in the package now (the start: ac7e13c; the factor, bounded to e^+-1: faac77a). Patched on
# top of it they would apply twice. To rerun the comparisons, run this script against the package of an older
# commit, e.g. in a scratch copy: `git checkout ac7e13c^ -- vaexprs` (both) or `git checkout faac77a^ -- vaexprs`.
if os.environ.get("FLDIAG_CELL_SIGMA") == "1" or os.environ.get("FLDIAG_SIGMA_INIT") == "1":
    import inspect

    from vaexprs.model.network import HurdleGaussianHead

    if os.environ.get("FLDIAG_CELL_SIGMA") == "1":
        if "cell_log_sigma" in inspect.getsource(HurdleGaussianHead.__init__):
            sys.exit("fulllength_diag: this vaexprs has the per-cell factor already; use the package of faac77a^")
        patch_cell_sigma()
    if os.environ.get("FLDIAG_SIGMA_INIT") == "1":
        if getattr(HurdleGaussianHead, "starts_from_data", False):
            sys.exit(
                "fulllength_diag: this vaexprs starts the hurdle from the data already; use the package of ac7e13c^"
            )
        patch_sigma_init()
EVAL_SEED = 0


def ckpt(name: str, seed: int) -> Path:
    return OUT / f"{name}_s{seed}.pt"


def do_fit(name: str, seed: int, extra: dict[str, Any] | None = None, tag: str = "") -> None:
    import torch

    import vaexprs

    torch.set_num_threads(1)
    adata = datasets.build(name)
    t = time.perf_counter()
    result = vaexprs.fit_vae(adata, "cell_type", seed=seed, likelihood="hurdle", progress=False, **(extra or {}))
    result.save(OUT / f"{name}_s{seed}{tag}.pt")
    print(f"{name} seed {seed}: fit {time.perf_counter() - t:.0f} s", flush=True)


# ----------------------------------------------------------------------------------------------- evaluation
def latent_stats(result: Any, adata: Any) -> tuple[np.ndarray, np.ndarray]:
    """The training cells' latent means and log-variances (encoder), in the training order (= adata's)."""
    import torch

    from vaexprs.model.loop import Batches

    pre = result.preprocessor
    codes = pre.labels.transform(adata.obs["cell_type"].astype(str).to_numpy())
    x = pre.normalize_matrix(adata.X)
    batches = Batches(x, codes, pre, result.model_config.n_labels)
    model = result.model.cpu().eval()
    mus, lvs = [], []
    with torch.inference_mode():
        for xb, cb in batches.iterate(512, torch.device("cpu")):
            inf = model.inference(xb, cb, sample=False)
            mus.append(inf["z_mean"].numpy())
            lvs.append(inf["z_logvar"].numpy())
    return np.concatenate(mus).astype(np.float64), np.concatenate(lvs).astype(np.float64)


def latent_variants(result: Any, mu: np.ndarray, logvar: np.ndarray, codes: np.ndarray, rng: np.random.Generator
                    ) -> dict[str, np.ndarray]:  # fmt: skip
    """Latents (N, D) for the same label codes as the real cells, several ways."""
    from sklearn.covariance import LedoitWolf

    n, d = mu.shape
    out = {"gmm": result.sampler.sample(codes, n, rng, "gmm").astype(np.float64)}
    out["own"] = mu.copy()
    out["own_post"] = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
    lw, diag, kde = (np.empty_like(mu) for _ in range(3))
    for c in np.unique(codes):
        rows = np.flatnonzero(codes == c)
        z = mu[rows]
        m = z.mean(0)
        k = rows.size
        eps = rng.standard_normal((k, d))
        cov_lw = LedoitWolf().fit(z).covariance_ if k > 1 else np.eye(d) * 1e-2
        lw[rows] = m + eps @ np.linalg.cholesky(cov_lw + 1e-9 * np.eye(d)).T
        var = z.var(0, ddof=1) if k > 1 else np.full(d, 1e-2)
        diag[rows] = m + rng.standard_normal((k, d)) * np.sqrt(var)
        # Silverman's shrunk smoothed bootstrap: covariance preserved, draws not copies of training cells
        h = (k * (d + 2) / 4.0) ** (-1.0 / (d + 4))
        pick = z[rng.integers(0, k, k)]
        kde[rows] = (
            m
            + (pick - m) / np.sqrt(1 + h**2)
            + (h / np.sqrt(1 + h**2)) * (rng.standard_normal((k, d)) @ np.linalg.cholesky(cov_lw + 1e-9 * np.eye(d)).T)
        )
    out.update(lw=lw, diag=diag, kde=kde, prior=rng.standard_normal(mu.shape))
    # shrink toward the label's centroid of latent means: z = m + lam (z - m); lam 0 = every cell at the centroid
    cent = np.stack([mu[codes == c].mean(0) for c in range(int(codes.max()) + 1)])[codes]
    for lam in (0.0, 0.5, 0.7):
        out[f"gmm_l{lam}"] = cent + lam * (out["gmm"] - cent)
    out["own_l0.5"] = cent + 0.5 * (mu - cent)
    # the aggregated posterior: a random training cell of the label, z ~ q(z | x_i) = N(mu_i, exp(logvar_i))
    # (a GaussianMixture with one diagonal component per cell); and a SMOTE-like interpolation between a cell and
    # one of its 3 nearest same-label neighbours in latent space
    agg, mix = np.empty_like(mu), np.empty_like(mu)
    for c in np.unique(codes):
        rows = np.flatnonzero(codes == c)
        pick = rows[rng.integers(0, rows.size, rows.size)]
        agg[rows] = mu[pick] + np.exp(0.5 * logvar[pick]) * rng.standard_normal((rows.size, d))
        z = mu[rows]
        dist = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(dist, np.inf)
        nn = np.argsort(dist, 1)[:, : min(3, max(rows.size - 1, 1))]
        i = rng.integers(0, rows.size, rows.size)
        j = nn[i, rng.integers(0, nn.shape[1], rows.size)]
        u = rng.uniform(0.0, 1.0, (rows.size, 1))
        mix[rows] = z[i] + u * (z[j] - z[i]) if rows.size > 1 else z[i]
    out.update(agg_post=agg, nn_mix=mix)
    return out


def decode(result: Any, z: np.ndarray, codes: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Hurdle cells from latents: sampled with the learnt sigma scaled by s ('s1', 's0.75', ...) or the mean."""
    from vaexprs.bundle.heads import hurdle_mean, sample_hurdle
    from vaexprs.model.fit import TorchDecoder

    o = TorchDecoder(result)(z.astype(np.float32), codes)
    if mode == "mean":
        return hurdle_mean(o["mu"], o["sigma"], o["pi_logit"]).astype(np.float32)
    scale = float(mode[1:])
    x = sample_hurdle(o["mu"], np.asarray(o["sigma"]) * scale, o["pi_logit"], rng)
    if result.value_cap is not None:
        np.minimum(x, result.value_cap, out=x)
    return x.astype(np.float32)


def pca_geometry(real: np.ndarray, rl: np.ndarray, gen: np.ndarray, gl: np.ndarray) -> dict[str, float]:
    """In the pooled 10-PC PCA (as explain_auc): distance to the real centroid, to the own label's real centroid,
    and the label centroids' offset (gen vs real) -- is the extra spread within labels or between them?"""
    from sklearn.decomposition import PCA

    pool = np.vstack([real, gen])
    z = PCA(n_components=int(min(10, pool.shape[0] - 1)), random_state=0).fit_transform(pool)
    zr, zg = z[: real.shape[0]], z[real.shape[0] :]
    c = zr.mean(0)
    out = {
        "dist_real": float(np.linalg.norm(zr - c, axis=1).mean()),
        "dist_gen": float(np.linalg.norm(zg - c, axis=1).mean()),
    }
    wr, wg, off, sep_r, sep_g = [], [], [], [], []
    for lab in np.unique(rl):
        cr, cg = zr[rl == lab].mean(0), zg[gl == lab].mean(0)
        wr.append(np.linalg.norm(zr[rl == lab] - cr, axis=1))
        wg.append(np.linalg.norm(zg[gl == lab] - cr, axis=1))
        off.append(np.linalg.norm(cg - cr))
        sep_r.append(np.linalg.norm(cr - c))
        sep_g.append(np.linalg.norm(cg - c))
    out["within_real"] = float(np.concatenate(wr).mean())
    out["within_gen"] = float(np.concatenate(wg).mean())  # to the REAL label centroid
    out["centroid_offset"] = float(np.mean(off))
    out["label_sep_real"] = float(np.mean(sep_r))
    out["label_sep_gen"] = float(np.mean(sep_g))
    return out


def within_label_var(real: np.ndarray, rl: np.ndarray, gen: np.ndarray, gl: np.ndarray) -> dict[str, float]:
    """Median over genes of the within-label variance ratio gen / real (pooled over labels), all genes and the
    genes detected in >= 20% of cells; plus the variance ratio of label means (between labels)."""
    wr = np.zeros(real.shape[1])
    wg = np.zeros(real.shape[1])
    mr, mg = [], []
    for lab in np.unique(rl):
        a, b = real[rl == lab], gen[gl == lab]
        wr += a.var(0) * a.shape[0]
        wg += b.var(0) * b.shape[0]
        mr.append(a.mean(0))
        mg.append(b.mean(0))
    det = (real > 0).mean(0)
    ok = wr > 0
    common = ok & (det >= 0.2)
    br, bg = np.var(mr, 0), np.var(mg, 0)
    okb = br > 0
    return {
        "within_ss_ratio": float(wg.sum() / wr.sum()),  # total within-label variance over all genes
        "within_ss_ratio_common": float(wg[common].sum() / wr[common].sum()) if common.any() else float("nan"),
        "within_var_ratio": float(np.median(wg[ok] / wr[ok])),
        "within_var_ratio_common": float(np.median(wg[common] / wr[common])) if common.any() else float("nan"),
        "between_var_ratio": float(np.median(bg[okb] / br[okb])),
        "between_var_ratio_common": float(np.median(bg[okb & common] / br[okb & common])),
    }


GRID = (
    "gmm",
    "own",
    "own_post",
    "lw",
    "diag",
    "kde",
    "prior",
    "gmm_l0.0",
    "gmm_l0.5",
    "gmm_l0.7",
    "own_l0.5",
    "agg_post",
    "nn_mix",
)


@dataclass
class SavedFit:
    """A data set, its real cells in the study's log space, and the checkpoint `do_fit` saved for it."""

    adata: Any
    kind: str
    labels: np.ndarray
    mean_lib: float
    real: np.ndarray
    result: Any
    codes: np.ndarray
    mu: np.ndarray
    logvar: np.ndarray


def load_saved_fit(name: str, seed: int, tag: str = "") -> SavedFit:
    from vaexprs.model.result import VAEResult

    adata = datasets.build(name)
    kind = adata.uns["bench"]["kind"]
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    mean_lib = harness.mean_library(adata.X)
    result = VAEResult.load(OUT / f"{name}_s{seed}{tag}.pt")
    mu, logvar = latent_stats(result, adata)
    return SavedFit(
        adata, kind, labels, mean_lib, harness.log_space(adata.X, kind, mean_lib), result,
        result.preprocessor.labels.transform(labels), mu, logvar,
    )  # fmt: skip


def do_eval(
    name: str,
    seed: int,
    gen_seeds: tuple[int, ...] = (11, 12),
    grid: tuple[str, ...] = GRID,
    tag: str = "",
    out_tag: str = "",
) -> None:
    import torch

    from benchmarks import quality

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    fit = load_saved_fit(name, seed, tag)
    adata, kind, labels, mean_lib, real = fit.adata, fit.kind, fit.labels, fit.mean_lib, fit.real
    result, codes, mu, logvar = fit.result, fit.codes, fit.mu, fit.logvar
    judge = harness.label_classifier(EVAL_SEED).fit(real, labels)
    assert result.preprocessor.normalize in ("lognorm", "none", "log"), result.preprocessor.normalize
    rec: dict[str, Any] = {
        "dataset": name,
        "fit_seed": seed,
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "normalize": result.preprocessor.normalize,
        "rows": [],
    }
    # the sampler the model fitted: components / covariance per label, and its spread vs the latent means'
    sam = []
    for c, lab in enumerate(result.labels):
        g = result.sampler.mixtures[c]
        z = mu[codes == c]
        emp = np.trace(np.cov(z, rowvar=False)) if z.shape[0] > 1 else 0.0
        draws = g.sample(4000, np.random.default_rng(0))
        sam.append(
            {
                "label": lab,
                "cells": int(z.shape[0]),
                "components": int(g.n_components),
                "trace_latent_means": float(emp),
                "trace_gmm": float(np.trace(np.cov(draws, rowvar=False))),
                "mean_post_var": float(np.exp(logvar[codes == c]).mean()),
            }
        )
    rec["sampler"] = sam
    # genes: how many are almost never detected
    det_cells = (real > 0).sum(0)
    rec["genes_detected_lt3"] = float(np.mean(det_cells < 3))
    rec["genes_detected_0"] = float(np.mean(det_cells == 0))

    def score(gen: np.ndarray, tag: dict[str, Any], gen_seed: int) -> dict[str, Any]:
        m = harness.score(real, labels, gen, labels, seed=EVAL_SEED, judge=judge)
        row = {
            **tag,
            "gen_seed": gen_seed,
            **{
                k: m[k]
                for k in (
                    "auc",
                    "keep",
                    "corr",
                    "zero_frac_gen",
                    "zero_frac_real",
                    "var_ratio_median",
                    "auc_pca_distance",
                    "auc_nonzero_sd",
                    "auc_cell_max",
                    "auc_detected",
                )
            },
        }
        row["keep_min_label"] = float(min(m["keep_by_label"].values()))
        row["keep_by_label"] = m["keep_by_label"]
        row.update(pca_geometry(real, labels, gen, labels))
        row.update(within_label_var(real, labels, gen, labels))
        # (c): the same score on the genes seen in >= 3 real cells only
        common = det_cells >= 3
        if common.mean() < 0.98:
            row["auc_genes_ge3"] = harness.rf_auc(real[:, common], gen[:, common], EVAL_SEED)
        print(
            json.dumps(
                {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "keep_by_label"}
            ),
            flush=True,
        )
        return row

    # the study's own path (gen_exprs defaults), for the check that the custom path reproduces it
    for _gs in gen_seeds[:1]:
        x, gl, _raw, _info = quality.generate(result, 1, kind, mean_lib, mean_lib, num_samples=adata.n_obs)
        m = harness.score(real, labels, x, gl, seed=EVAL_SEED, judge=judge)
        rec["study_path"] = {k: m[k] for k in ("auc", "keep", "auc_pca_distance", "var_ratio_median")}
        print("study path", rec["study_path"], flush=True)
    # real split-half for the geometry numbers' scale
    a, b = harness.stratified_split(labels, 0.5, 0)
    rec["real_halves"] = {
        **pca_geometry(real[a], labels[a], real[b], labels[b]),
        "auc_pca_distance": harness.explain_auc(real[a], real[b])["auc_pca_distance"],
        **within_label_var(real[a], labels[a], real[b], labels[b]),
    }
    print("real halves", rec["real_halves"], flush=True)
    modes = ("s1", "s0.75", "s0.5", "mean")
    for gs in gen_seeds:
        rng = np.random.default_rng(gs)
        lat = latent_variants(result, mu, logvar, codes, rng)
        for lname, z in lat.items():
            if lname not in grid:
                continue
            for mode in modes if lname in ("gmm", "own") else ("s1", "mean") if lname in ("gmm_l0.0",) else ("s1",):
                gen = decode(result, z, codes, mode, rng)
                rec["rows"].append(score(gen, {"latent": lname, "noise": mode}, gs))
    rec["seconds"] = time.perf_counter() - t0
    (OUT / f"eval_{name}_s{seed}{tag}{out_tag}.json").write_text(json.dumps(rec, indent=1))


def table() -> None:
    """Markdown: per data set / fit / sampler / noise, AUC, keep, worst label keep, auc_pca_distance (mean over the
    generation seeds, with each seed's AUC), the within-label distance in PCA space (gen / real) and the total
    within-label variance ratio (all genes)."""
    print(
        "| data | fit | latent | noise | AUC (per gen seed) | keep | worst label keep | auc_pca_distance | "
        "PCA within-label dist gen/real | within-label var gen/real |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(OUT.glob("eval_*.json")):
        d = json.loads(path.read_text())
        fit = path.stem.split(f"_s{d['fit_seed']}")[-1].replace("_x", "") or "defaults (hurdle)"
        s = {
            x["label"]: (
                x["cells"],
                round(x["trace_latent_means"] / len(d["sampler"]) if False else x["trace_latent_means"], 1),
                round(x["mean_post_var"], 3),
            )
            for x in d["sampler"]
        }
        print(
            f"| {d['dataset']} | {fit} seed {d['fit_seed']} | study gen_exprs | s1 | {d['study_path']['auc']:.3f} | "
            f"{d['study_path']['keep']:.3f} | | {d['study_path']['auc_pca_distance']:.3f} | | |"
        )
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in d["rows"]:
            groups.setdefault((r["latent"], r["noise"]), []).append(r)
        for (lat, noise), rs in groups.items():
            m = {
                k: float(np.mean([r[k] for r in rs]))
                for k in (
                    "auc",
                    "keep",
                    "keep_min_label",
                    "auc_pca_distance",
                    "within_gen",
                    "within_real",
                    "within_ss_ratio",
                )
            }
            aucs = "/".join(f"{r['auc']:.3f}" for r in rs)
            print(
                f"| {d['dataset']} | {fit} seed {d['fit_seed']} | {lat} | {noise} | {m['auc']:.3f} ({aucs}) | "
                f"{m['keep']:.3f} | {m['keep_min_label']:.3f} | {m['auc_pca_distance']:.3f} | "
                f"{m['within_gen'] / m['within_real']:.2f} | {m['within_ss_ratio']:.2f} |"
            )
        print(
            f"<!-- {d['dataset']}{fit}: sampler (cells, trace of latent-mean covariance, mean posterior var) {s}; "
            f"real halves auc_pca_distance {d['real_halves']['auc_pca_distance']:.3f} -->"
        )


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    OUT.mkdir(exist_ok=True)
    cmd = sys.argv[1]
    if cmd == "table":
        table()
    elif cmd == "fit":
        extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
        do_fit(sys.argv[2], int(sys.argv[3]), extra, sys.argv[5] if len(sys.argv) > 5 else "")
    elif cmd == "eval":
        grid = tuple(sys.argv[4].split(",")) if len(sys.argv) > 4 else GRID
        do_eval(
            sys.argv[2],
            int(sys.argv[3]),
            grid=grid,
            tag=sys.argv[5] if len(sys.argv) > 5 else "",
            out_tag=sys.argv[6] if len(sys.argv) > 6 else "",
        )
