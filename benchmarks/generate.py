"""Generation speed and memory: onnxruntime vs torch eager vs a numpy GEMM roofline, and `vaexprs generate` end to end.

    python benchmarks/generate.py                 # full run (several minutes); JSON on stdout and in results/
    python benchmarks/generate.py --quick         # smoke run (< 60 s)
    python benchmarks/generate.py --out my.json --workdir /big/disk

Part 1, decoding throughput (cells/s), for genes G x hidden H x chunk size B. The model is a VAE (latent 2) fitted
for one epoch on random data (its weights' values do not matter for speed) and exported with `export_bundle`, so
the ONNX decoder is the real served graph: Gemm -> Relu -> Gemm -> Sigmoid -> Mul -> Add (de-scaling folded in).
Methods, run on the same latents, interleaved per config (the order rotates every repetition), best of 3:
  ort            `vaexprs.generate.engine.create_session(path, "cpu")` (onnxruntime's default threads), outputs bound to a
                 preallocated buffer with io_binding, as the engine does
  ort_threads2   the same with threads=2
  ort_generator  the generation loop (iter_blocks + OnnxDecoder): what `vaexprs generate` runs, less the writing
                 (adds GMM latent sampling and per-chunk binding)
  ort_gemm_only  diagnostic: the decoder graph cut after its last Gemm (no Sigmoid/Mul/Add)
  torch          `result.output_decoder()` under `torch.inference_mode()` (allocates its outputs every call)
  roofline       numpy: ONLY the two matrix products (z @ W1, h @ W2; float32; `np.matmul(..., out=...)`); no
                 bias, ReLU, sigmoid or de-scaling. It is a practical bound (OpenBLAS), not a hardware peak.

Part 2, end to end: `vaexprs generate BUNDLE -n N -o out.h5ad` (2,000 genes, hidden 256) as a subprocess, for
N = 100,000 and 1,000,000; wall time and peak RSS of the child (`getrusage(RUSAGE_CHILDREN).ru_maxrss` read in a
fresh helper process per run). The 1M wall time is compared with (roofline decode time for 1M cells at its best
chunk size + a raw write of the same bytes: 1M x 2,000 float32 written chunk by chunk with
`f.write(chunk.tobytes())`, no fsync, like the generator). `os.sync()` runs (untimed) before each big write so no
step pays for the previous one's dirty pages. The ~8 GB files are deleted right after each run; the 1M case is
skipped (with a note) when less than 20 GB are free.

Part 3, start-up: `vaexprs --help` and `vaexprs generate BUNDLE -n 10` (the 2,000-gene bundle), each timed as a
whole process 15 times (5 with --quick), median against the targets 0.15 s and 0.8 s; `--cli
.venv-light/bin/vaexprs` times the light install (what a deployed generator runs) instead of this environment's.

Part 4, count files: an nb model's sampled counts (100,000 x 2,000; 20,000 with --quick) written by `vaexprs
generate` as CSR (the default) and `--dense`, against AnnData's `write_h5ad` of the same cells (target <= 1.5x).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `python benchmarks/....py` without PYTHONPATH
    sys.path.insert(0, str(HERE.parent))

from benchmarks import machine  # noqa: E402

DEFAULT_OUT = HERE / "results" / "generate.json"
LATENT = 2
METHODS = ("ort", "ort_threads2", "ort_generator", "ort_gemm_only", "torch", "roofline")
MIN_FREE_FOR_1M = 20 * 1024**3

FULL = {
    "configs": [(2000, 256), (2000, 512), (20000, 256), (20000, 512)],
    "chunks": {2000: [1024, 2048, 4096, 8192, 16384], 20000: [1024, 2048, 4096]},
    "cells": {2000: 100_000, 20000: 20_000},
    "reps": 3,
    "e2e_n": [100_000, 1_000_000],
    "e2e_wide": (20000, 256, 20_000, [None, 1024]),  # genes, hidden, N, batch sizes (None = the CLI default)
}
QUICK = {
    "configs": [(2000, 256)],
    "chunks": {2000: [1024, 8192]},
    "cells": {2000: 8192},
    "reps": 2,
    "e2e_n": [10_000],
}


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- machine info
def machine_info() -> dict[str, Any]:
    blas = None
    with contextlib.suppress(Exception):
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    import torch

    return {
        **machine.describe(("vaexprs", "onnxruntime", "torch", "numpy", "h5py", "anndata", "onnx")),
        "numpy_blas": blas,
        "torch_threads": torch.get_num_threads(),
        "ort_default_threads": "onnxruntime default (intra_op_num_threads=0: one per physical core)",
    }


# ------------------------------------------------------------------------------------------------------- the model
def build_bundle(genes: int, hidden: int, folder: Path) -> tuple[Any, Path]:
    """A VAE fitted for one epoch on random data, exported to `folder`; returns (result, bundle folder).
    likelihood="bce" (VAExprs' decoder: Gemm, Relu, Gemm, Sigmoid, de-scaling), named: `auto` (the default)
    would select on random values, and the roofline below assumes one chain of Gemms."""
    import vaexprs

    rng = np.random.default_rng(0)
    x = rng.random((64, genes), dtype=np.float32)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        result = vaexprs.fit_vae(
            x, hidden=(hidden,), epochs=1, normalize="none", latent_dim=LATENT, device="cpu", likelihood="bce"
        )
        vaexprs.export_bundle(result, folder, force=True)
    return result, folder


def gemm_weights(result: Any) -> list[np.ndarray]:
    """The decoder's weight matrices as (in, out) float32 C-contiguous arrays, in order."""
    import torch

    linears = [m for m in result.model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    linears += [m for m in result.model.head.modules() if isinstance(m, torch.nn.Linear)]
    return [np.ascontiguousarray(m.weight.detach().cpu().numpy().T, dtype=np.float32) for m in linears]


def gemm_only_graph(decoder_onnx: Path, out: Path) -> Path:
    """The decoder graph cut after its last Gemm/MatMul (+bias Add, if the exporter split it): no sigmoid/de-scale."""
    import onnx
    from onnx import helper

    model = onnx.load(str(decoder_onnx))
    nodes = list(model.graph.node)
    last = max(i for i, n in enumerate(nodes) if n.op_type in ("Gemm", "MatMul"))
    if nodes[last].op_type == "MatMul" and last + 1 < len(nodes) and nodes[last + 1].op_type == "Add":
        last += 1  # MatMul + bias Add
    kept = nodes[: last + 1]
    used = {name for n in kept for name in n.input}
    inits = [t for t in model.graph.initializer if t.name in used]
    out_name = kept[-1].output[0]
    g_out = model.graph.output[0].type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in g_out]
    graph = helper.make_graph(
        kept,
        "decoder_gemm_only",
        list(model.graph.input),
        [helper.make_tensor_value_info(out_name, onnx.TensorProto.FLOAT, shape)],
        initializer=inits,
    )
    cut = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    onnx.checker.check_model(cut)
    onnx.save(cut, str(out))
    return out


# --------------------------------------------------------------------------------------------------- the runners
class OrtRunner:
    """One session from vaexprs' own create_session; input and output bound once (the engine binds per chunk)."""

    def __init__(self, path: Path, z: np.ndarray, out: np.ndarray, threads: int | None = None) -> None:
        import onnxruntime as ort

        from vaexprs.generate.engine import create_session

        self.session, _ = create_session(path, "cpu", threads)
        self.binding = self.session.io_binding()
        self.binding.bind_cpu_input(self.session.get_inputs()[0].name, z)
        self.binding.bind_ortvalue_output(self.session.get_outputs()[0].name, ort.OrtValue.ortvalue_from_numpy(out))

    def __call__(self, calls: int) -> None:
        run, binding = self.session.run_with_iobinding, self.binding
        for _ in range(calls):
            run(binding)


class GeneratorRunner:
    """The generation loop as `vaexprs generate` drives it (OnnxDecoder, iter_blocks), output discarded."""

    def __init__(self, bundle_dir: Path, batch: int) -> None:
        from vaexprs.bundle.schema import load_bundle
        from vaexprs.generate.engine import OnnxDecoder

        self.decoder = OnnxDecoder(load_bundle(bundle_dir), provider="cpu")
        self.batch = batch

    def __call__(self, calls: int) -> None:
        from vaexprs.generate.loop import iter_blocks
        from vaexprs.generate.request import GenerationRequest, plan_generation

        spec = self.decoder.bundle.spec
        plan = plan_generation(spec, GenerationRequest(n=calls * self.batch, batch_size=self.batch))
        for _block in iter_blocks(spec, plan, self.decoder):
            pass


class TorchRunner:
    def __init__(self, decoder: Any, z: np.ndarray) -> None:
        import torch

        self.torch = torch
        self.decoder = decoder
        self.z = torch.from_numpy(z)

    def __call__(self, calls: int) -> None:
        with self.torch.inference_mode():
            for _ in range(calls):
                self.decoder(self.z)


class RooflineRunner:
    """Only the GEMMs: z @ W1 -> h, h @ W2 -> x, into preallocated outputs."""

    def __init__(self, weights: list[np.ndarray], z: np.ndarray, out: np.ndarray) -> None:
        b = z.shape[0]
        self.steps = []
        src = z
        for i, w in enumerate(weights):
            dst = out if i == len(weights) - 1 else np.empty((b, w.shape[1]), dtype=np.float32)
            self.steps.append((src, w, dst))
            src = dst

    def __call__(self, calls: int) -> None:
        steps = self.steps
        for _ in range(calls):
            for a, w, dst in steps:
                np.matmul(a, w, out=dst)


def bench_config(
    genes: int, hidden: int, chunks: list[int], cells: int, reps: int, workdir: Path
) -> tuple[list[dict[str, Any]], Path]:
    """All chunk sizes of one (genes, hidden) model; returns the rows and the bundle folder."""
    note(f"[decode] building VAE genes={genes} hidden={hidden} ...")
    bundle_dir = workdir / f"bundle_g{genes}_h{hidden}"
    result, _ = build_bundle(genes, hidden, bundle_dir)
    decoder = result.output_decoder()
    weights = gemm_weights(result)
    cut = gemm_only_graph(bundle_dir / "decoder.onnx", workdir / f"gemm_only_g{genes}_h{hidden}.onnx")
    rows = []
    for batch in chunks:
        rng = np.random.default_rng(batch)
        z = rng.standard_normal((batch, LATENT)).astype(np.float32)
        out = np.empty((batch, genes), dtype=np.float32)  # shared by the sequential methods; written, never read
        runners = {
            "ort": OrtRunner(bundle_dir / "decoder.onnx", z, out),
            "ort_threads2": OrtRunner(bundle_dir / "decoder.onnx", z, out, threads=2),
            "ort_generator": GeneratorRunner(bundle_dir, batch),
            "ort_gemm_only": OrtRunner(cut, z, out),
            "torch": TorchRunner(decoder, z),
            "roofline": RooflineRunner(weights, z, out),
        }
        calls = max(1, math.ceil(cells / batch))
        n_cells = calls * batch
        for run in runners.values():  # warm-up: allocations, arenas, thread pools, page faults
            run(2)
        times: dict[str, list[float]] = {m: [] for m in runners}
        order = list(runners)
        for rep in range(reps):
            k = rep % len(order)
            for m in order[k:] + order[:k]:  # rotate so no method always runs first (or after the slowest)
                t0 = time.perf_counter()
                runners[m](calls)
                times[m].append(time.perf_counter() - t0)
        rate = {m: n_cells / min(ts) for m, ts in times.items()}
        row = {
            "genes": genes,
            "hidden": hidden,
            "chunk": batch,
            "cells_per_rep": n_cells,
            "loadavg_1min": round(os.getloadavg()[0], 2),
            "cells_per_s": {m: round(v, 1) for m, v in rate.items()},
            "seconds": {m: [round(t, 4) for t in ts] for m, ts in times.items()},
            "ratio_ort_torch": round(rate["ort"] / rate["torch"], 3),
            "ratio_ort_roofline": round(rate["ort"] / rate["roofline"], 3),
            "ratio_ort_threads2_roofline": round(rate["ort_threads2"] / rate["roofline"], 3),
            "ratio_generator_roofline": round(rate["ort_generator"] / rate["roofline"], 3),
            "ratio_gemm_only_roofline": round(rate["ort_gemm_only"] / rate["roofline"], 3),
            "ratio_ort_gemm_only": round(rate["ort"] / rate["ort_gemm_only"], 3),
        }
        note(
            f"[decode] G={genes} H={hidden} B={batch}: "
            + ", ".join(f"{m} {v / 1e3:.1f}k" for m, v in rate.items())
            + f" cells/s; ort/torch {row['ratio_ort_torch']:.2f}, ort/roofline {row['ratio_ort_roofline']:.2f}"
        )
        rows.append(row)
        del runners, out
        gc.collect()
    del result, decoder
    gc.collect()
    return rows, bundle_dir


def summarize_best(rows: list[dict[str, Any]], genes: int, hidden: int) -> dict[str, Any] | None:
    sel = [r for r in rows if r["genes"] == genes and r["hidden"] == hidden]
    if not sel:
        return None

    def best(method: str) -> dict[str, Any]:
        return max(sel, key=lambda r: r["cells_per_s"][method])

    b = best("ort")
    roof = best("roofline")
    torch_best = best("torch")
    return {
        "genes": genes,
        "hidden": hidden,
        "ort_best_chunk": b["chunk"],
        "ort_cells_per_s": b["cells_per_s"]["ort"],
        "torch_cells_per_s_same_chunk": b["cells_per_s"]["torch"],
        "roofline_cells_per_s_same_chunk": b["cells_per_s"]["roofline"],
        "ratio_ort_torch": b["ratio_ort_torch"],
        "ratio_ort_roofline": b["ratio_ort_roofline"],
        "target_ort_torch_ge_1_5": b["ratio_ort_torch"] >= 1.5,
        "target_ort_roofline_ge_0_7": b["ratio_ort_roofline"] >= 0.7,
        "roofline_best_chunk": roof["chunk"],
        "roofline_best_cells_per_s": roof["cells_per_s"]["roofline"],
        "ratio_ort_best_to_roofline_best": round(b["cells_per_s"]["ort"] / roof["cells_per_s"]["roofline"], 3),
        "torch_best_chunk": torch_best["chunk"],
        "ratio_ort_best_to_torch_best": round(b["cells_per_s"]["ort"] / torch_best["cells_per_s"]["torch"], 3),
        "generator_best_chunk": best("ort_generator")["chunk"],
        "generator_best_cells_per_s": best("ort_generator")["cells_per_s"]["ort_generator"],
        "cli_default_chunk_8192": next(
            (
                {"ort": r["cells_per_s"]["ort"], "ort_generator": r["cells_per_s"]["ort_generator"]}
                for r in sel
                if r["chunk"] == 8192
            ),
            None,
        ),
    }


# ---------------------------------------------------------------------------------------------------- end to end
HELPER = r"""
import json, resource, subprocess, sys, time
argv = json.loads(sys.argv[1])
t0 = time.perf_counter()
p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "wall_s": wall, "maxrss_kb": ru.ru_maxrss, "user_s": ru.ru_utime,
                  "sys_s": ru.ru_stime, "stdout": p.stdout[-2000:], "stderr": p.stderr[-2000:]}))
"""


def cli_command() -> list[str]:
    exe = Path(sys.executable).parent / "vaexprs"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("vaexprs")
    return [found] if found else [sys.executable, "-m", "vaexprs.cli"]


def run_cli(bundle_dir: Path, n: int, out: Path, batch: int | None = None) -> dict[str, Any]:
    """`vaexprs generate` in a child of a fresh helper, so RUSAGE_CHILDREN's maxrss is that child's alone."""
    argv = [*cli_command(), "generate", str(bundle_dir), "-n", str(n), "-o", str(out), "--force"]
    if batch is not None:
        argv += ["--batch-size", str(batch)]
    os.sync()  # untimed: start without earlier runs' dirty pages
    p = subprocess.run([sys.executable, "-c", HELPER, json.dumps(argv)], capture_output=True, text=True, check=True)
    rec = json.loads(p.stdout)
    size = out.stat().st_size if out.exists() else None
    out.unlink(missing_ok=True)
    if rec["rc"] != 0:
        raise RuntimeError(f"vaexprs generate failed ({rec['rc']}): {rec['stderr'][-500:]}")
    m = re.search(r"\(provider [^,]+, ([0-9.]+) s\)", rec["stdout"])
    return {
        "n": n,
        "batch_size": batch or 8192,
        "wall_s": round(rec["wall_s"], 3),
        "in_process_s": float(m.group(1)) if m else None,  # what the CLI reports: resolve -> last chunk written
        "peak_rss_mb": round(rec["maxrss_kb"] / 1024, 1),
        "cpu_user_s": round(rec["user_s"], 2),
        "cpu_sys_s": round(rec["sys_s"], 2),
        "file_bytes": size,
        "cells_per_s": round(n / rec["wall_s"], 1),
        "command": " ".join(["vaexprs", *argv[1:]]),
    }


def bench_startup(bundle_dir: Path, out: Path, reps: int, cli: list[str] | None = None) -> dict[str, Any]:
    """What a user waits for before anything happens: `vaexprs --help` and `vaexprs generate BUNDLE -n 10`, each
    `reps` times (alternating), wall time of the whole process. Bytecode caches are allowed and warmed by one
    untimed run of each, as after any pip install (PYTHONDONTWRITEBYTECODE, set on some machines, would make every
    run compile vaexprs' modules again: ~25 ms that no installed user pays)."""
    cli = cli or cli_command()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    commands = {
        "help": [*cli, "--help"],
        "generate_n10": [*cli, "generate", str(bundle_dir), "-n", "10", "-o", str(out), "--force", "-q"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for rep in range(reps + 1):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if rep:  # the first round writes the bytecode caches
                times[name].append(time.perf_counter() - start)
    out.unlink(missing_ok=True)
    targets = {"help": 0.15, "generate_n10": 0.8}
    res: dict[str, Any] = {"executable": cli[0], "reps": reps}
    for name, ts in times.items():
        ts.sort()
        res[name] = {
            "min_s": round(ts[0], 3),
            "median_s": round(ts[len(ts) // 2], 3),
            "max_s": round(ts[-1], 3),
            "target_s": targets[name],
            "median_below_target": ts[len(ts) // 2] < targets[name],
        }
        note(f"[startup] {name}: median {ts[len(ts) // 2]:.3f} s (min {ts[0]:.3f}, max {ts[-1]:.3f})")
    return res


def bench_sparse(workdir: Path, n: int, genes: int = 2000) -> dict[str, Any]:
    """Count cells on disk: `vaexprs generate` of an nb model (sampled counts, ~86% zeros like UMI data) to .h5ad as
    written by default (CSR, streamed), with --dense, and AnnData's own CSR file of the same cells (read back and
    written by `write_h5ad`): sizes and wall times. Target: the streamed CSR file <= 1.5x AnnData's."""
    import anndata as ad

    import vaexprs

    rng = np.random.default_rng(0)
    x = rng.poisson(0.15, (200, genes)).astype(np.float32)
    labels = np.repeat(["a", "b", "c", "d"], 50)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        result = vaexprs.fit_vae(x, labels, likelihood="nb", hidden=(256,), latent_dim=10, epochs=1, progress=False)
        bundle = vaexprs.export_bundle(result, workdir / "bundle_nb", force=True)
    res: dict[str, Any] = {"n": n, "genes": genes, "likelihood": "nb"}
    for name, extra in (("csr", []), ("dense", ["--dense"])):
        path = workdir / f"counts_{name}.h5ad"
        argv = [*cli_command(), "generate", str(bundle), "-n", str(n), "-o", str(path), "--force", "-q", *extra]
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        res[name] = {"wall_s": round(time.perf_counter() - start, 2), "mb": round(path.stat().st_size / 1e6, 1)}
    cells = ad.read_h5ad(workdir / "counts_csr.h5ad")
    res["nonzero_frac"] = round(cells.X.nnz / (n * genes), 3)
    start = time.perf_counter()
    ad.AnnData(cells.X, obs=cells.obs, var=cells.var).write_h5ad(workdir / "counts_anndata.h5ad")
    res["anndata_csr"] = {
        "write_s": round(time.perf_counter() - start, 2),
        "mb": round((workdir / "counts_anndata.h5ad").stat().st_size / 1e6, 1),
    }
    res["ratio_csr_to_anndata"] = round(res["csr"]["mb"] / res["anndata_csr"]["mb"], 3)
    res["target_ratio_le_1_5"] = res["ratio_csr_to_anndata"] <= 1.5
    for name in ("csr", "dense", "anndata"):
        (workdir / f"counts_{name}.h5ad").unlink(missing_ok=True)
    note(f"[sparse] {n} x {genes} counts: CSR {res['csr']['mb']} MB, dense {res['dense']['mb']} MB, AnnData's CSR "
         f"{res['anndata_csr']['mb']} MB: ratio {res['ratio_csr_to_anndata']}")  # fmt: skip
    return res


def raw_write(n: int, genes: int, chunk: int, path: Path) -> float:
    """Seconds to write n x genes float32 chunk by chunk to a plain file (f.write(chunk.tobytes()), no fsync)."""
    x = np.random.default_rng(0).random((chunk, genes), dtype=np.float32)
    os.sync()
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for start in range(0, n, chunk):
            f.write(x[: min(chunk, n - start)].tobytes())
    seconds = time.perf_counter() - t0
    path.unlink()
    return seconds


def bench_e2e(bundle_dir: Path, ns: list[int], best: dict[str, Any], workdir: Path, genes: int) -> dict[str, Any]:
    out = workdir / "e2e_out.h5ad"
    res: dict[str, Any] = {"runs": [], "notes": []}
    roof_rate = best["roofline_best_cells_per_s"]
    for n in ns:
        need = n * genes * 4 * 1.1
        free = shutil.disk_usage(workdir).free
        if n >= 1_000_000 and free < MIN_FREE_FOR_1M:
            msg = f"skipped N={n}: only {free / 1024**3:.1f} GB free in {workdir} (< 20 GB)"
            note("[e2e] " + msg)
            res["notes"].append(msg)
            continue
        if free < need:
            msg = f"skipped N={n}: needs ~{need / 1024**3:.1f} GB, {free / 1024**3:.1f} GB free"
            note("[e2e] " + msg)
            res["notes"].append(msg)
            continue
        reps = 2 if 50_000 <= n <= 200_000 else 1
        raw_s = min(raw_write(n, genes, 8192, workdir / "raw.bin") for _ in range(reps))
        runs = [run_cli(bundle_dir, n, out) for _ in range(reps)]
        run = min(runs, key=lambda r: r["wall_s"])
        run["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        run["wall_s_all"] = [r["wall_s"] for r in runs]
        run["raw_write_s"] = round(raw_s, 3)
        run["roofline_decode_s"] = round(n / roof_rate, 3)
        bound = n / roof_rate + raw_s
        run["ratio_e2e_to_roofline_plus_write"] = round(run["wall_s"] / bound, 3)
        # the kernel writes dirty pages back while the next chunks decode, so the sum over-states a serial bound:
        run["ratio_e2e_to_max_roofline_write"] = round(run["wall_s"] / max(n / roof_rate, raw_s), 3)
        if run["in_process_s"]:
            run["ratio_in_process_to_roofline_plus_write"] = round(run["in_process_s"] / bound, 3)
        note(
            f"[e2e] N={n}: wall {run['wall_s']:.2f} s (in-process {run['in_process_s']} s), peak RSS "
            f"{run['peak_rss_mb']:.0f} MB; raw write {raw_s:.2f} s, roofline {n / roof_rate:.2f} s; "
            f"ratio {run['ratio_e2e_to_roofline_plus_write']:.2f}"
        )
        res["runs"].append(run)
    # the CLI with the chunk size that decoded fastest, on the smallest N (cheap; shows the default's cost)
    alt = best["ort_best_chunk"]
    if alt != 8192 and ns:
        n = ns[0]
        runs = [run_cli(bundle_dir, n, out, batch=alt) for _ in range(2)]
        run = min(runs, key=lambda r: r["wall_s"])
        run["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
        run["wall_s_all"] = [r["wall_s"] for r in runs]
        note(f"[e2e] N={n} --batch-size {alt}: wall {run['wall_s']:.2f} s, peak RSS {run['peak_rss_mb']:.0f} MB")
        res["best_chunk_run"] = run
    # process start-up: interpreter, imports, bundle load, session (N = 1)
    run = run_cli(bundle_dir, 1, out)
    res["startup_n1"] = {
        "wall_s": run["wall_s"],
        "in_process_s": run["in_process_s"],
        "peak_rss_mb": run["peak_rss_mb"],
    }
    for r in res["runs"]:  # the same ratio without the fixed cost of starting a process (interpreter, imports)
        bound = r["roofline_decode_s"] + r["raw_write_s"]
        r["ratio_e2e_minus_startup_to_bound"] = round((r["wall_s"] - res["startup_n1"]["wall_s"]) / bound, 3)
    by_n = {r["n"]: r for r in res["runs"]}
    big = by_n.get(1_000_000) or (res["runs"][-1] if res["runs"] else None)
    small = by_n.get(100_000) or (res["runs"][0] if res["runs"] else None)
    if big is not None:
        res["summary"] = {
            "n_large": big["n"],
            "ratio_e2e_to_roofline_plus_write": big["ratio_e2e_to_roofline_plus_write"],
            "target_ratio_le_1_5": big["ratio_e2e_to_roofline_plus_write"] <= 1.5,
            "peak_rss_mb": {str(r["n"]): r["peak_rss_mb"] for r in res["runs"]},
            "target_rss_lt_1gb": all(r["peak_rss_mb"] < 1024 for r in res["runs"]),
        }
        if small is not None and small is not big:
            res["summary"]["rss_ratio_large_to_small"] = round(big["peak_rss_mb"] / small["peak_rss_mb"], 3)
    return res


def bench_e2e_wide(bundle_dir: Path, n: int, batches: list[int | None], workdir: Path) -> dict[str, Any]:
    """Peak RSS of `vaexprs generate` at 20,000 genes: memory grows with chunk bytes (cells x genes), not cells."""
    out = workdir / "e2e_wide.h5ad"
    runs = []
    for batch in batches:
        run = run_cli(bundle_dir, n, out, batch=batch)
        note(
            f"[e2e] 20,000 genes N={n} --batch-size {run['batch_size']}: wall {run['wall_s']:.2f} s, "
            f"peak RSS {run['peak_rss_mb']:.0f} MB"
        )
        runs.append(run)
    return {"genes": 20000, "runs": runs}


# ------------------------------------------------------------------------------------------------------ markdown
def _k(v: float) -> str:
    return f"{v / 1e3:,.0f}k" if v >= 1e4 else f"{v / 1e3:,.1f}k"


def markdown(report: dict[str, Any]) -> str:
    """The results as markdown tables (what benchmarks/README.md and the main README show)."""
    m = report["machine"]
    v = m["versions"]
    lines = [
        f"Machine: {m['cpu_count']} CPUs ({m.get('cpu_model')}), onnxruntime {v.get('onnxruntime')}, "
        f"torch {v.get('torch')}, numpy {v.get('numpy')} ({m.get('numpy_blas')}); {m['date']}; "
        f"load average {m['loadavg_start'][0]:.1f} at start, {m.get('loadavg_end', [float('nan')])[0]:.1f} at end.",
        "",
        "Decoding throughput, cells/s (best of repetitions; VAE, latent 2; ratios are ort / other):",
        "",
        "| genes | hidden | chunk | ort | ort threads=2 | ort Generator | ort GEMMs only | torch eager | numpy roofline "
        "| ort / torch | ort / roofline |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["decode"]:
        c = r["cells_per_s"]
        lines.append(
            f"| {r['genes']:,} | {r['hidden']} | {r['chunk']:,} | {_k(c['ort'])} | {_k(c['ort_threads2'])} | "
            f"{_k(c['ort_generator'])} | {_k(c['ort_gemm_only'])} | {_k(c['torch'])} | {_k(c['roofline'])} | "
            f"{r['ratio_ort_torch']:.2f} | {r['ratio_ort_roofline']:.2f} |"
        )
    lines += [
        "",
        "Best chunk size for ort per model (ratios at that chunk size; targets at 2,000 genes / hidden 256: "
        "ort >= 1.5x torch, >= 0.7x roofline):",
        "",
        "| genes | hidden | ort best chunk | ort cells/s | ort / torch | ort / roofline | roofline best chunk "
        "| ort best / roofline best |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in report["decode_best"]:
        if b is None:
            continue
        lines.append(
            f"| {b['genes']:,} | {b['hidden']} | {b['ort_best_chunk']:,} | {_k(b['ort_cells_per_s'])} | "
            f"{b['ratio_ort_torch']:.2f} | {b['ratio_ort_roofline']:.2f} | {b['roofline_best_chunk']:,} | "
            f"{b['ratio_ort_best_to_roofline_best']:.2f} |"
        )
    st = report.get("startup")
    if st:
        lines += [
            "",
            f"Start-up, wall time of the whole process ({st['executable']}, {st['reps']} runs each, bytecode cached):",
            "",
            "| command | median s | min s | max s | target s |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, label in (("help", "`vaexprs --help`"), ("generate_n10", "`vaexprs generate BUNDLE -n 10`")):
            r = st[name]
            lines.append(f"| {label} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | < {r['target_s']} |")
    sp = report.get("sparse")
    if sp:
        lines += [
            "",
            f"Count cells on disk (an nb model, {sp['n']:,} x {sp['genes']:,}, {sp['nonzero_frac']:.1%} non-zero), "
            "`vaexprs generate -o x.h5ad` against AnnData's own CSR file of the same cells:",
            "",
            "| file | MB | wall s |",
            "|---|---:|---:|",
            f"| vaexprs, CSR (the default for sampled cells) | {sp['csr']['mb']} | {sp['csr']['wall_s']} |",
            f"| vaexprs, `--dense` | {sp['dense']['mb']} | {sp['dense']['wall_s']} |",
            f"| AnnData `write_h5ad` of the CSR cells | {sp['anndata_csr']['mb']} | {sp['anndata_csr']['write_s']} (write only) |",
            "",
            f"CSR / AnnData: {sp['ratio_csr_to_anndata']:.3f} (target <= 1.5).",
        ]
    e2e = report.get("e2e")
    if e2e:
        lines += [
            "",
            "End to end, `vaexprs generate BUNDLE -n N -o out.h5ad` (2,000 genes, hidden 256, default chunk 8,192), "
            "as a subprocess; bound = roofline decode at its best chunk + raw write of the same bytes:",
            "",
            "| N | wall s | in-process s | cells/s | peak RSS MB | raw write s | roofline decode s | wall / bound "
            "| (wall - start-up) / bound | wall / max(decode, write) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in e2e["runs"]:
            lines.append(
                f"| {r['n']:,} | {r['wall_s']:.2f} | {r['in_process_s'] if r['in_process_s'] is not None else '-'} | "
                f"{_k(r['cells_per_s'])} | {r['peak_rss_mb']:.0f} | {r['raw_write_s']:.2f} | "
                f"{r['roofline_decode_s']:.2f} | {r['ratio_e2e_to_roofline_plus_write']:.2f} | "
                f"{r.get('ratio_e2e_minus_startup_to_bound', float('nan')):.2f} | "
                f"{r.get('ratio_e2e_to_max_roofline_write', float('nan')):.2f} |"
            )
        s = e2e.get("startup_n1")
        if s:
            lines.append(
                f"| 1 (start-up) | {s['wall_s']:.2f} | {s['in_process_s']} | - | {s['peak_rss_mb']:.0f} | - | - | - | - | - |"
            )
        if e2e.get("best_chunk_run"):
            r = e2e["best_chunk_run"]
            lines.append("")
            lines.append(
                f"With `--batch-size {r['batch_size']}` (ort's best chunk): N = {r['n']:,} in {r['wall_s']:.2f} s "
                f"(in-process {r['in_process_s']} s), peak RSS {r['peak_rss_mb']:.0f} MB."
            )
        wide = report.get("e2e_wide")
        if wide:
            lines += ["", "Peak RSS at 20,000 genes (hidden 256), `vaexprs generate -n N -o out.h5ad`:", ""]
            lines += [
                "| N | --batch-size | chunk MB (cells x genes x 4 B) | wall s | peak RSS MB |",
                "|---:|---:|---:|---:|---:|",
            ]
            for r in wide["runs"]:
                mb = r["batch_size"] * wide["genes"] * 4 / 2**20
                lines.append(
                    f"| {r['n']:,} | {r['batch_size']:,} | {mb:.0f} | {r['wall_s']:.2f} | {r['peak_rss_mb']:.0f} |"
                )
        for n in e2e.get("notes", []):
            lines.append(f"\nNote: {n}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small N, few configs: a smoke run (< 60 s)")
    ap.add_argument("--out", type=Path, default=None, help=f"write the JSON here too (default {DEFAULT_OUT})")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder for bundles and the big output files")
    ap.add_argument("--skip-e2e", action="store_true", help="decoding throughput only")
    ap.add_argument("--e2e-n", type=str, default=None, help="comma-separated N for the end-to-end runs, e.g. 300000")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per method and config (default 3; quick 2)")
    ap.add_argument("--markdown", type=Path, metavar="JSON", help="print the tables of an earlier run and exit")
    ap.add_argument("--startup-reps", type=int, default=None, help="runs of --help and -n 10 (default 15; quick 5)")
    ap.add_argument("--cli", type=Path, default=None, help="the vaexprs executable to time for start-up, e.g. "
                    ".venv-light/bin/vaexprs (default: the one beside this python)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())), end="")
        return 0

    logging.getLogger("vaexprs").setLevel(logging.WARNING)
    plan = dict(QUICK if args.quick else FULL)
    if args.e2e_n:
        plan["e2e_n"] = [int(v) for v in args.e2e_n.split(",")]
    out_path = args.out or (HERE / "results" / "generate_quick.json" if args.quick else DEFAULT_OUT)
    info = machine_info()
    t_start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="vaexprs-bench-", dir=args.workdir))
    report: dict[str, Any] = {
        "benchmark": "generate",
        "mode": "quick" if args.quick else "full",
        "command": "python benchmarks/generate.py"
        + (" --quick" if args.quick else "")
        + (f" --reps {args.reps}" if args.reps else "")
        + (f" --cli {args.cli}" if args.cli else ""),
        "machine": info,
        "notes": [
            "cells/s are best of the repetitions; methods interleaved per config, order rotated each repetition",
            "ort = vaexprs.generate.engine.create_session(path, 'cpu') + io_binding into a preallocated output",
            "the ONNX decoder is the served graph: Gemm, Relu, Gemm, Sigmoid, Mul, Add (sigmoid + de-scaling)",
            "roofline counts ONLY the two GEMMs (numpy/OpenBLAS matmul with out=): no bias, ReLU, sigmoid or "
            "de-scaling; it is a practical bound, not a hardware peak, and ort can beat it where MLAS beats OpenBLAS",
            "torch = result.output_decoder() under torch.inference_mode(); allocates its (B, G) outputs every call",
            "ort_gemm_only = the decoder graph cut after the last Gemm (diagnostic: cost of sigmoid + de-scaling)",
            "ort_generator = the generation loop (iter_blocks + OnnxDecoder): latent sampling + decoding, no writing",
        ],
    }
    try:
        rows: list[dict[str, Any]] = []
        bundles: dict[tuple[int, int], Path] = {}
        for genes, hidden in plan["configs"]:
            reps = args.reps or plan["reps"]
            r, bdir = bench_config(genes, hidden, plan["chunks"][genes], plan["cells"][genes], reps, workdir)
            rows.extend(r)
            bundles[(genes, hidden)] = bdir
        report["decode"] = rows
        report["decode_best"] = [summarize_best(rows, g, h) for g, h in plan["configs"]]
        headline = summarize_best(rows, 2000, 256)
        report["headline"] = {"decode_2000_genes_hidden_256": headline}
        if not args.skip_e2e and (2000, 256) in bundles:
            cli = [str(args.cli)] if args.cli else None
            reps = args.startup_reps or (5 if args.quick else 15)
            report["startup"] = bench_startup(bundles[(2000, 256)], workdir / "startup.h5ad", reps, cli)
            report["sparse"] = bench_sparse(workdir, 20_000 if args.quick else 100_000)
        if not args.skip_e2e and headline is not None:
            report["e2e"] = bench_e2e(bundles[(2000, 256)], plan["e2e_n"], headline, workdir, 2000)
            report["headline"]["e2e"] = report["e2e"].get("summary")
        wide = plan.get("e2e_wide")
        if not args.skip_e2e and wide and (wide[0], wide[1]) in bundles:
            report["e2e_wide"] = bench_e2e_wide(bundles[(wide[0], wide[1])], wide[2], wide[3], workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = list(os.getloadavg())
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(report, indent=2)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text + "\n")
    print(text)
    note(f"wrote {out_path} ({report['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
