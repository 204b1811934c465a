"""Generation on a Dask cluster: one task per block, each written straight into a .zarr store; and a lazy AnnData.

    vaexprs generate MODEL -n 10000000 -o cells.zarr --dask local            # one worker per CPU (capped)
    vaexprs generate MODEL -n 10000000 -o cells.zarr --dask local:4          # four local workers
    vaexprs generate MODEL -n 10000000 -o cells.zarr --dask tcp://sched:8786 # a running `dask scheduler`
    adata = generate_lazy("bundle_dir", n=1_000_000, seed=1)                 # X is a dask array: nothing made yet

The client resolves MODEL once (a bundle folder, models:/ or runs:/), and ships the bundle's verified bytes
(bundle.json and decoder.onnx; `ShippedBundle`) to the workers once (`scatter`). A worker process loads them
into one onnxruntime session and keeps it for every block it is given (`worker_decoder`, a cache keyed by the
bundle's hash). Block k is made by `make_block` (vaexprs.generate.loop) from its own random stream seeded by
(seed, k), so the cells are bit-identical to the single-process .h5ad/.zarr output for the same seed and block
size, whatever the number of workers and whichever worker makes which block.

Writing: the client lays out the store (vaexprs.generate.writers.create_store) in a temp folder beside the
target, chunked by the block size; each task writes its block into chunk k of X, obs_names and the label codes
and returns only a row count. Dask blocks are Zarr chunks by construction: there is no dask.array.to_zarr and
no rechunking (which can misalign chunks and corrupt a store: dask/dask#12583, #12458). At most a few tasks per
worker thread are in flight, so neither the client nor the scheduler holds more than that, whatever n is. The
temp folder becomes the target only after every block is written; on any failure (a bad address, a scheduler
that cannot be reached or dies, a worker error, Ctrl-C) the cluster is closed first, then the temp folder is
removed, so no half-written store is ever at the target.

Workers must run the same vaexprs (checked before any block is sent) and see the output folder at the same
path (checked too: a shared file system for a remote cluster). dask and distributed are imported only here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaexprs.bundle.schema import Bundle, load_bundle
from vaexprs.config import Provider, choices
from vaexprs.errors import (
    InputError,
    OptionError,
    VaexprsError,
    VaexprsRuntimeError,
    check_interrupted,
    first_line,
)
from vaexprs.files import atomic_folder, check_free_space
from vaexprs.generate.engine import OnnxDecoder, max_threads
from vaexprs.generate.loop import make_block
from vaexprs.generate.request import GenerationRequest, Plan, plan_generation
from vaexprs.generate.writers import (
    STORE_SUFFIXES,
    StoreBlocks,
    cell_names,
    check_output,
    check_store_chunks,
    check_store_target,
    create_store,
    finish_store,
    import_zarr,
    store_bytes,
)

log = logging.getLogger("vaexprs")

DASK_EXTRA = 'pip install "vaexprs[dask]"'
CONNECT_TIMEOUT_S = 5  # reaching the scheduler (and reconnecting to it mid-run) before giving up
WORKERS_TIMEOUT_S = 20  # a scheduler with no worker: how long to wait for one
SCATTER_TIMEOUT_S = 120  # shipping the bundle to every worker
CLOSE_TIMEOUT_S = 10
MAX_LOCAL_WORKERS = 32
TASKS_PER_THREAD = 2  # blocks in flight per worker thread: enough to keep workers busy, few enough to stay flat
ADDRESS_FORMS = "local, local:W (W workers) or tcp://HOST:PORT (a running scheduler)"


# ------------------------------------------------------------------------------------------ the cluster address


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed --dask value: a local cluster of `workers` processes, or a running scheduler at `address`."""

    text: str
    workers: int | None = None  # local
    address: str | None = None  # tcp://HOST:PORT

    @property
    def is_local(self) -> bool:
        return self.address is None


def parse_address(text: str) -> ClusterAddress:
    """local | local:W | tcp://HOST:PORT; anything else (or more local workers than CPUs) is an OptionError."""
    value = str(text).strip()
    cpus = max_threads()
    if value == "local":
        return ClusterAddress(value, workers=min(cpus, MAX_LOCAL_WORKERS))
    if value.startswith("local:"):
        count = value[len("local:") :]
        if not count.isdigit() or int(count) < 1:
            raise OptionError("dask", f"local:W needs a whole number of workers >= 1; got {value!r}")
        workers = int(count)
        if workers > cpus:
            raise OptionError(
                "dask",
                f"{value} asks for {workers} local workers but this machine has {cpus} CPU(s) for them; "
                f"use local:{min(cpus, MAX_LOCAL_WORKERS)} or fewer (or a tcp:// cluster)",
            )
        if workers > MAX_LOCAL_WORKERS:
            raise OptionError(
                "dask", f"{value}: a local cluster has at most {MAX_LOCAL_WORKERS} workers; use a tcp:// cluster"
            )
        return ClusterAddress(value, workers=workers)
    if value.startswith("tcp://"):
        host, sep, port = value[len("tcp://") :].rpartition(":")
        if sep and host and port.isdigit() and 1 <= int(port) <= 65535 and "/" not in host:
            return ClusterAddress(value, address=value)
    raise OptionError("dask", f"must be {ADDRESS_FORMS}; got {value!r}")


def import_distributed() -> Any:
    """dask.distributed, or a one-line InputError naming the extra that installs it."""
    try:
        import dask
        import dask.array  # noqa: F401
        import distributed
    except ImportError:
        raise InputError(f"--dask needs dask.distributed, which is not installed: {DASK_EXTRA}") from None
    return distributed


@contextlib.contextmanager
def _quiet_distributed() -> Iterator[None]:
    """distributed logs connection failures as tracebacks; the CLI says them in one line instead."""
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(("distributed.", "tornado."))]
    loggers = [logging.getLogger(name) for name in ("distributed", "tornado", "asyncio", *names)]
    levels = [lg.level for lg in loggers]  # dask's logging config gives some children their own level
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def open_client(distributed: Any, target: Any, remote: bool) -> Any:
    """distributed.Client(target), given up after CONNECT_TIMEOUT_S in all. Its own timeout covers opening the
    connection, not the handshake after it: a peer that accepts and never answers (a port forward to nothing, a
    stalled scheduler) held the command for as long as the peer stayed up. A remote client is therefore opened in
    a thread that is abandoned at the deadline (the command then fails and exits; a daemon thread does not hold
    it)."""
    if not remote:
        return distributed.Client(target, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    opened: dict[str, Any] = {}

    def attempt() -> None:
        try:
            opened["client"] = distributed.Client(target, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except BaseException as exc:  # handed to the waiting thread
            opened["error"] = exc

    thread = threading.Thread(target=attempt, name="vaexprs-dask-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 1)
    if thread.is_alive():
        raise TimeoutError("it accepted the connection but did not answer (is it a Dask scheduler?)")
    if "error" in opened:
        raise opened["error"]
    return opened["client"]


@contextlib.contextmanager
def connect(cluster: ClusterAddress) -> Iterator[Any]:
    """A dask.distributed Client for `cluster` (starting a LocalCluster when it is local), closed afterwards.

    Connecting and reconnecting give up after CONNECT_TIMEOUT_S; a scheduler without workers after
    WORKERS_TIMEOUT_S. Failures are VaexprsRuntimeErrors (exit 1) of one line.
    """
    import dask

    distributed = import_distributed()
    timeout = f"{CONNECT_TIMEOUT_S}s"
    settings = {"distributed.comm.timeouts.connect": timeout, "distributed.comm.retry.count": 0}
    with _quiet_distributed(), dask.config.set(settings), contextlib.ExitStack() as stack:
        if cluster.is_local:
            try:
                with _sigint_ignored():  # the workers inherit it: Ctrl-C stops this process, which stops them
                    # the CPUs shared out: one worker gets two task threads on two CPUs, so decoding one block
                    # overlaps writing another (as the single-process writer thread does)
                    threads = max(1, max_threads() // cluster.workers)
                    local = distributed.LocalCluster(
                        n_workers=cluster.workers, threads_per_worker=threads, processes=True, host="127.0.0.1",
                        dashboard_address=None, silence_logs=logging.CRITICAL,
                    )  # fmt: skip
            except Exception as exc:
                raise VaexprsRuntimeError(f"could not start a local Dask cluster: {first_line(exc)}") from None
            stack.callback(_close, local)
            target: Any = local
        else:
            target = cluster.address
        try:
            client = open_client(distributed, target, remote=not cluster.is_local)
        except Exception as exc:  # OSError (refused, timed out) and whatever a non-Dask peer makes it raise
            raise VaexprsRuntimeError(
                f"cannot connect to the Dask scheduler at {cluster.text} within {CONNECT_TIMEOUT_S} s: {first_line(exc)}"
            ) from None
        stack.callback(_close, client)
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except Exception:
            raise VaexprsRuntimeError(
                f"the Dask scheduler at {cluster.text} has no workers (waited {WORKERS_TIMEOUT_S} s); "
                f"start some with: dask worker {cluster.text}"
            ) from None
        yield client


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while local worker processes start: an ignored signal survives exec, so a Ctrl-C in the
    terminal (sent to the whole process group) reaches only this process, which closes the cluster, instead of
    every worker printing its own KeyboardInterrupt traceback."""
    import signal

    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _close(thing: Any) -> None:
    with contextlib.suppress(Exception):
        thing.close(timeout=CLOSE_TIMEOUT_S)


# ------------------------------------------------------------------------------------------ the worker side


@dataclass(frozen=True)
class ShippedBundle:
    """A verified bundle as bytes, to send to workers: bundle.json (without the encoder) and decoder.onnx."""

    key: str  # sha256 of both: the worker's session cache key
    bundle_json: bytes
    decoder_file: str
    decoder: bytes

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ShippedBundle:
        raw = dict(bundle.raw)
        raw["onnx"] = {"decoder": raw["onnx"]["decoder"]}  # generation needs the decoder only
        text = json.dumps(raw, sort_keys=True).encode("utf-8")
        data = bundle.decoder_bytes or bundle.decoder_path.read_bytes()
        key = hashlib.sha256(text + hashlib.sha256(data).digest()).hexdigest()
        return cls(key, text, bundle.decoder.file, data)

    def load(self) -> Bundle:
        """The bundle, validated again (and the decoder's sha256 checked) on this side."""
        with tempfile.TemporaryDirectory(prefix="vaexprs-bundle-") as folder:
            (Path(folder) / "bundle.json").write_bytes(self.bundle_json)
            (Path(folder) / self.decoder_file).write_bytes(self.decoder)
            return load_bundle(folder)  # keeps the verified decoder bytes in memory


_DECODERS: dict[tuple[str, str, int | None], OnnxDecoder] = {}
_DECODERS_LOCK = threading.Lock()
_SESSIONS_STARTED = 0  # onnxruntime sessions this process started (a worker should start one per bundle)
MAX_CACHED_DECODERS = 2


def worker_decoder(shipped: ShippedBundle, provider: str, threads: int | None) -> OnnxDecoder:
    """This process's decoder for a shipped bundle: one onnxruntime session per (bundle, provider, threads)."""
    global _SESSIONS_STARTED
    key = (shipped.key, provider, threads)
    with _DECODERS_LOCK:
        decoder = _DECODERS.get(key)
        if decoder is None:
            decoder = OnnxDecoder(shipped.load(), provider, threads)
            _SESSIONS_STARTED += 1
            while len(_DECODERS) >= MAX_CACHED_DECODERS:
                _DECODERS.pop(next(iter(_DECODERS)))
            _DECODERS[key] = decoder
    return decoder


def _worker_threads(threads: int | None) -> int | None:
    """onnxruntime threads on a Dask worker: the given number, else the CPUs shared by the worker's threads."""
    if threads is not None:
        return threads
    try:
        from distributed import get_worker

        nthreads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):  # not on a distributed worker (a local dask scheduler)
        return None
    return max(1, max_threads() // max(1, nthreads))


def block_cells(shipped: ShippedBundle, plan: Plan, k: int, provider: str, threads: int | None) -> np.ndarray:
    """X of block k, (b, G) float32, made on this worker."""
    decoder = worker_decoder(shipped, provider, _worker_threads(threads))
    return make_block(decoder.bundle.spec, plan, k, decoder).x


def write_block(
    shipped: ShippedBundle, plan: Plan, k: int, folder: str, provider: str, threads: int | None
) -> tuple[int, str]:
    """Make block k and write it into the store at `folder` (its chunk k); returns (rows, active provider)."""
    decoder = worker_decoder(shipped, provider, _worker_threads(threads))
    bundle = decoder.bundle
    block = make_block(bundle.spec, plan, k, decoder)
    codes = None
    if block.codes is not None:
        codes = plan.category_positions(bundle.n_labels)[block.codes]
    StoreBlocks(Path(folder)).write(block.start, block.x, codes)
    return block.x.shape[0], decoder.active_provider


def worker_facts() -> dict[str, Any]:
    """What the client checks and reports about a worker process."""
    from vaexprs import __version__

    return {"vaexprs": __version__, "sessions": _SESSIONS_STARTED, "cpus": max_threads(), "pid": os.getpid()}


def _can_write(folder: str) -> bool:
    return os.path.isdir(folder) and os.access(folder, os.W_OK)


# ------------------------------------------------------------------------------------------ the client side


def _check_options(provider: str, threads: int | None, cluster: ClusterAddress | None) -> None:
    """What workers would otherwise refuse one by one, refused once before any work."""
    if provider not in choices(Provider):
        raise OptionError("provider", f"must be one of {', '.join(choices(Provider))}; got {provider!r}")
    if threads is not None:
        cap = max_threads() if cluster is None or cluster.is_local else None
        if int(threads) < 0 or (cap is not None and int(threads) > cap):
            limit = f" and {cap} (this machine's CPUs)" if cap is not None else ""
            raise OptionError("threads", f"must be between 0 (onnxruntime's choice){limit}; got {threads}")


def _check_workers(client: Any, cluster: ClusterAddress) -> dict[str, dict[str, Any]]:
    """Every worker runs this vaexprs (else the cells could differ, or the tasks fail one by one)."""
    from vaexprs import __version__

    try:
        facts = client.run(worker_facts)
    except Exception as exc:
        raise VaexprsRuntimeError(
            f"the Dask workers at {cluster.text} cannot run vaexprs ({first_line(exc)}); install the same "
            f"vaexprs {__version__} with an onnxruntime (vaexprs[cpu] or vaexprs[gpu]) on every worker"
        ) from None
    other = {w: f["vaexprs"] for w, f in facts.items() if f["vaexprs"] != __version__}
    if other:
        worker, version = next(iter(other.items()))
        raise VaexprsRuntimeError(
            f"Dask worker {worker} runs vaexprs {version}, this client {__version__}; install the same version "
            "everywhere (the cells could differ otherwise)"
        )
    return facts


def _check_visible(client: Any, folder: Path, cluster: ClusterAddress) -> None:
    try:
        seen = client.run(_can_write, str(folder))
    except Exception as exc:
        raise VaexprsRuntimeError(f"the Dask cluster at {cluster.text} failed: {first_line(exc)}") from None
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise VaexprsRuntimeError(
            f"Dask worker {blind[0]} cannot write into the output folder {folder.parent}; write to a file system "
            "that every worker mounts at the same path, as the same user"
        )


def _run_blocks(
    client: Any,
    cluster: ClusterAddress,
    shipped: ShippedBundle,
    plan: Plan,
    folder: Path,
    provider: str,
    threads: int | None,
    bar: Any,
) -> set[str]:
    """Every block of the plan as a task writing into `folder`; a bounded number in flight; returns the
    providers the workers used. Any failure cancels what is left and raises."""
    from distributed import as_completed

    token = uuid.uuid4().hex[:12]
    try:
        bundle_future = client.scatter(shipped, broadcast=True, hash=False, timeout=SCATTER_TIMEOUT_S)
        total_threads = max(1, sum(client.nthreads().values()))
    except Exception as exc:
        raise VaexprsRuntimeError(f"could not send the model to the Dask workers: {first_line(exc)}") from None
    window = max(4, TASKS_PER_THREAD * total_threads)
    blocks = iter(range(plan.n_blocks))
    outstanding: set[Any] = set()
    done_rows = 0
    providers: set[str] = set()

    def submit() -> Any:
        k = next(blocks, None)
        if k is None:
            return None
        future = client.submit(
            write_block, bundle_future, plan, k, str(folder), provider, threads, key=f"vaexprs-block-{token}-{k}",
            priority=-k, retries=1,
        )  # fmt: skip
        outstanding.add(future)
        return future

    try:
        queue = as_completed([f for f in (submit() for _ in range(window)) if f is not None], loop=client.loop)
        for future in queue:
            try:
                rows, active = future.result()
            except VaexprsError:  # raised by a task (e.g. the decoder failed): its own message and exit code
                raise
            except Exception as exc:  # the scheduler died, a worker was lost for good, ...
                raise _cluster_error(exc, cluster) from None
            outstanding.discard(future)
            future.release()
            done_rows += rows
            providers.add(active)
            if bar is not None:
                bar.advance(rows)
            check_interrupted()
            following = submit()
            if following is not None:
                queue.add(following)
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(outstanding), force=True)
        raise
    if done_rows != plan.n_total:
        raise VaexprsRuntimeError(f"the Dask cluster made {done_rows} of the {plan.n_total} cells")
    return providers


def _cluster_error(exc: BaseException, cluster: ClusterAddress) -> VaexprsRuntimeError:
    text = first_line(exc)
    if "scheduler-connection-lost" in text or type(exc).__name__ == "CommClosedError":
        return VaexprsRuntimeError(
            f"lost the connection to the Dask scheduler at {cluster.text} (it stopped, or the network failed)"
        )
    return VaexprsRuntimeError(f"the Dask cluster at {cluster.text} failed: {text}")


def generate_zarr(
    model: Any,
    out: str | os.PathLike[str],
    request: GenerationRequest,
    dask: str,
    *,
    provider: str = "auto",
    threads: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """`vaexprs generate MODEL -o cells.zarr --dask ADDRESS`: the blocks made on a Dask cluster, written into
    a .zarr store (see the module docstring); returns a summary like generate_to_file's."""
    from vaexprs.generate.pipeline import describe, file_uns, opened_bundle
    from vaexprs.progress import ProgressBar

    out_path = Path(out)
    if out_path.suffix.lower() not in STORE_SUFFIXES:
        raise OptionError("dask", f"writes a .zarr store; give -o NAME.zarr (got {out_path.name!r})")
    out_path = check_output(out_path, force, suffixes=STORE_SUFFIXES)
    cluster = parse_address(dask)
    _check_options(provider, threads, cluster)
    import_zarr()
    import_distributed()
    session_threads = threads
    if cluster.is_local and threads is None:  # the machine's CPUs shared by the local workers
        session_threads = max(1, max_threads() // max(1, cluster.workers or 1))
    t0 = time.perf_counter()
    with opened_bundle(model) as (bundle, uri, version):
        plan = plan_generation(bundle.spec, request)
        shipped = ShippedBundle.from_bundle(bundle)
    check_store_chunks(plan.n_total, plan.batch_size)
    check_free_space(out_path, store_bytes(plan.n_total, bundle.n_genes))
    bar = None
    # absolute: workers started in another folder write into it too (a relative name was theirs to resolve)
    with atomic_folder(out_path.absolute(), force) as folder:  # removed on failure, after the cluster is closed
        with connect(cluster) as client:
            facts = _check_workers(client, cluster)
            create_store(folder, bundle.genes, plan.n_total, plan.batch_size, plan.categories)
            _check_visible(client, folder, cluster)
            bar = ProgressBar(plan.n_total, "generating", unit="cells") if progress else None
            t_blocks = time.perf_counter()
            try:
                providers = _run_blocks(client, cluster, shipped, plan, folder, provider, session_threads, bar)
            finally:
                if bar is not None:
                    bar.stop()
            blocks_seconds = time.perf_counter() - t_blocks
            with contextlib.suppress(Exception):
                facts = client.run(worker_facts)
        meta = describe(bundle, uri, version, ",".join(sorted(providers)), plan)
        meta.update({"dask": cluster.text, "dask_workers": len(facts)})
        finish_store(folder, file_uns(meta))
        check_store_target(out_path, force)  # a target that appeared meanwhile: refused, or ours to replace
    seconds = time.perf_counter() - t0
    log.info(
        "generated %d cells into %s in %.2f s on %d Dask worker(s) (%s)",
        plan.n_total, out_path, seconds, len(facts), meta["provider"],
    )  # fmt: skip
    return {
        "n_cells": plan.n_total,
        "out": str(out_path),
        "provider": meta["provider"],
        "model_uri": uri,
        "model_version": version,
        "seconds": seconds,
        "startup_seconds": t_blocks - t0,  # resolving the model, starting or reaching the cluster, the checks
        "blocks_seconds": blocks_seconds,  # making and writing the blocks
        "dask": cluster.text,
        "workers": len(facts),
        "sessions": {worker: f["sessions"] for worker, f in facts.items()},
    }


# ------------------------------------------------------------------------------------------ the lazy AnnData


def block_label_codes(plan: Plan, k: int) -> np.ndarray | None:
    """Block k's label codes without making its cells: the first draws of its stream, as make_block does."""
    return plan.block_codes(k, plan.block_rng(k))


MAX_LAZY_CELLS = 20_000_000  # generate_lazy's obs in memory: about 2 GB at 100 bytes a cell


def generate_lazy(
    model: Any,
    request: GenerationRequest | None = None,
    *,
    provider: str = "auto",
    threads: int | None = None,
    **fields: Any,
) -> Any:
    """A lazy AnnData of generated cells: X is a dask array, one chunk per block; nothing is decoded yet.

        adata = generate_lazy("bundle_dir", n=1_000_000, seed=1)        # or models:/NAME@ALIAS, runs:/...
        adata.X                                   # dask.array (1_000_000, G) float32, chunks (batch_size, G)
        adata[:5000].X.compute()                  # makes only the blocks it needs
        adata.write_zarr("cells.zarr")            # blocks computed and written chunk by chunk
        with distributed.Client("tcp://sched:8786"): x = adata.X.sum(axis=0).compute()   # on a cluster

    Arguments are those of `generate_array`: `model` (a bundle folder, a models:/ or runs:/ URI, a Bundle or an
    OnnxDecoder), a GenerationRequest or its fields as keywords (n, label, per_label, sampler, temperature, seed,
    batch_size, output_space), `provider` and `threads` for the onnxruntime sessions the tasks start.

    The values are bit-identical to `generate_array` / `vaexprs generate` with the same seed and batch_size,
    whichever scheduler computes them (threads, processes or a distributed cluster, any number of workers):
    chunk k is block k, made from its own random stream (seed, k). Every process that computes blocks starts
    one onnxruntime session and reuses it. The bundle's bytes travel inside the graph (one key), so workers
    need vaexprs and onnxruntime, not the model's files.

    In memory at once: obs (labels are drawn up front, cheaply, without decoding: about 100 bytes a cell with
    the cell names; at most MAX_LAZY_CELLS, 20 million, about 2 GB), var and uns. var_names are the genes;
    obs['cell_type'] (a CVAE) and obs['origin'] = "generated" are categoricals; uns['vaexprs'] records the
    model, the seed and what the values mean, as in the files `vaexprs generate` writes (its `provider` is the
    requested one: the tasks have not run yet). Needs vaexprs[dask].
    """
    import anndata as ad
    import pandas as pd

    from vaexprs.generate.pipeline import as_request, describe, file_uns, opened_bundle

    request = as_request(request, fields)
    _check_options(provider, threads, None)
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise InputError(f"generate_lazy needs dask, which is not installed: {DASK_EXTRA}") from None
    with opened_bundle(model) as (bundle, uri, version):
        plan = plan_generation(bundle.spec, request)
        shipped = ShippedBundle.from_bundle(bundle)
    if plan.n_total > MAX_LAZY_CELLS:
        raise OptionError(
            "n",
            f"of {plan.n_total} cells is more than generate_lazy holds: its obs live in memory (about 100 bytes a "
            f"cell), so it takes at most {MAX_LAZY_CELLS:,}; write larger sets with `vaexprs generate` (streamed "
            "to a file, --dask for a cluster)",
        )
    sizes = tuple(stop - start for start, stop in (plan.block_bounds(k) for k in range(plan.n_blocks)))
    shipped_key = dask.delayed(shipped, pure=True, name=f"vaexprs-bundle-{shipped.key[:16]}")
    x = da.map_blocks(
        _lazy_block, shipped_key, plan, provider, threads, chunks=(sizes, (bundle.n_genes,)), dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32), name=f"vaexprs-generate-{dask.base.tokenize(shipped.key, plan, provider, threads)}",
    )  # fmt: skip
    obs = pd.DataFrame(index=pd.Index(cell_names(0, plan.n_total)))
    if plan.categories is not None:
        positions = plan.category_positions(bundle.n_labels)
        codes = np.concatenate([positions[block_label_codes(plan, k)] for k in range(plan.n_blocks)])
        obs["cell_type"] = pd.Categorical.from_codes(codes, categories=plan.categories)
    obs["origin"] = pd.Categorical.from_codes(np.zeros(plan.n_total, dtype=np.int8), categories=["generated"])
    var = pd.DataFrame(index=pd.Index([str(g) for g in bundle.genes]))
    uns = file_uns(describe(bundle, uri, version, provider, plan))
    return ad.AnnData(X=x, obs=obs, var=var, uns=uns)


def _lazy_block(
    shipped: ShippedBundle, plan: Plan, provider: str, threads: int | None, block_id: tuple[int, int] | None = None
) -> np.ndarray:
    """A chunk of generate_lazy's X: block `block_id[0]` of the plan."""
    assert block_id is not None
    return block_cells(shipped, plan, block_id[0], provider, threads)
