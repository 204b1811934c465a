"""A generation request, validated once, and its plan: how many cells, which labels, in which blocks.

    request = GenerationRequest(n=1000, label="group2", seed=3)
    plan = plan_generation(spec, request)          # InputError before any work when the request cannot be met
    for k in range(plan.n_blocks):
        rng = plan.block_rng(k); codes = plan.block_codes(k, rng)   # what block k draws, from (seed, k) alone

Cells are made in blocks of `batch_size`. Block k draws everything it needs (labels, latents, noise) from its
own random stream, seeded by (seed, k), so the cells depend only on the seed and the block size: never on how
many processes or Dask workers made the blocks, nor in which order. Labels are drawn per block too (a count
per label is laid out in request order), so nothing grows with the number of cells.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vaexprs.bundle.heads import OutputSpace, resolve_output_space
from vaexprs.bundle.spec import GenerativeSpec
from vaexprs.errors import InputError, OptionError
from vaexprs.generate.options import (  # noqa: F401 (re-exported: the request's home before options.py)
    BLOCK_BYTES,
    DEFAULT_BLOCK_CELLS,
    MAX_BLOCK_BYTES,
    MAX_BLOCK_CELLS,
    MAX_CELLS,
    MIN_DEFAULT_BLOCK_CELLS,
    GenerationRequest,
    default_batch_size,
    parse_per_label,
)


@dataclass(frozen=True)
class Plan:
    """A request resolved against a model: block layout, label draws and output space. Immutable, reusable."""

    request: GenerationRequest
    n_total: int
    batch_size: int
    space: OutputSpace
    categories: list[str] | None  # the labels that can occur, in model order (None for a VAE)
    fixed_code: int | None = None  # --label: every cell has this code
    counts: np.ndarray | None = None  # --per-label: cells per code, laid out in request order
    count_codes: np.ndarray | None = None  # the codes of `counts`, in request order
    proportions: np.ndarray | None = None  # neither: codes drawn per block in these proportions

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def sampler(self) -> str:
        return self.request.sampler

    @property
    def temperature(self) -> float:
        return self.request.temperature

    @property
    def n_blocks(self) -> int:
        return -(-self.n_total // self.batch_size)

    def block_bounds(self, k: int) -> tuple[int, int]:
        start = k * self.batch_size
        return start, min(start + self.batch_size, self.n_total)

    def block_rng(self, k: int) -> np.random.Generator:
        """Block k's own random stream: a function of (seed, k) only."""
        return np.random.default_rng(np.random.SeedSequence(self.request.seed, spawn_key=(k,)))

    def category_positions(self, n_labels: int) -> np.ndarray | None:
        """Model label code -> position among `categories` (the labels that can occur); None for a VAE."""
        if self.categories is None:
            return None
        positions = np.full(n_labels, -1, dtype=np.int64)
        codes = self.count_codes if self.counts is not None else None
        if self.fixed_code is not None:
            positions[self.fixed_code] = 0
        elif codes is not None:
            for i, code in enumerate(sorted(set(codes.tolist()))):
                positions[code] = i
        else:
            positions[np.flatnonzero(self.proportions > 0)] = np.arange(len(self.categories))
        return positions

    def block_codes(self, k: int, rng: np.random.Generator) -> np.ndarray | None:
        """Label codes of block k's cells (None for a VAE); draws from `rng` only for training proportions."""
        if self.categories is None:
            return None
        start, stop = self.block_bounds(k)
        b = stop - start
        if self.fixed_code is not None:
            return np.full(b, self.fixed_code, dtype=np.int64)
        if self.counts is not None:
            ends = np.cumsum(self.counts)
            first = int(np.searchsorted(ends, start, side="right"))
            last = int(np.searchsorted(ends, stop - 1, side="right"))
            parts = []
            for i in range(first, last + 1):
                lo = max(start, int(ends[i] - self.counts[i]))
                hi = min(stop, int(ends[i]))
                parts.append(np.full(hi - lo, self.count_codes[i], dtype=np.int64))
            return np.concatenate(parts)
        return rng.choice(len(self.proportions), size=b, p=self.proportions).astype(np.int64)


def _label_code(spec: GenerativeSpec, label: Any, option: str = "label") -> int:
    """The model's code of `label`; an unknown one is an error worded for the option that named it."""
    try:
        return spec.labels.index(str(label))
    except ValueError:
        what = f"{label!r}" if option == "label" else f"label {label!r}"
        raise OptionError(option, f"{what} is unknown; this model knows: {', '.join(spec.labels)}") from None


def plan_generation(spec: GenerativeSpec, request: GenerationRequest) -> Plan:
    """Check a request against a model and lay it out in blocks; InputError before any work when it cannot be met."""
    space = resolve_output_space(spec.likelihood, spec.output_space, request.output_space)
    batch_size = request.batch_size or default_batch_size(spec.n_genes)
    if batch_size * spec.n_genes * 4 > MAX_BLOCK_BYTES:
        raise OptionError(
            "batch_size",
            f"of {batch_size} cells x {spec.n_genes} genes is {batch_size * spec.n_genes * 4 / 2**30:.1f} GiB per block; "
            f"the limit is {MAX_BLOCK_BYTES / 2**30:.0f} GiB (use <= {MAX_BLOCK_BYTES // (4 * spec.n_genes)})",
        )
    per_label = request.per_label
    if request.label is not None and per_label is not None:
        raise InputError("give either a label or a count per label, not both")
    if not spec.labels:
        if request.label is not None or per_label is not None:
            raise InputError("this model has no labels (a VAE); a label or a count per label needs a CVAE")
        n = _require_n(request)
        return Plan(request, n, min(batch_size, n), space, None)
    if per_label is not None:
        counts_by_label = parse_per_label(per_label) if isinstance(per_label, str) else dict(per_label)
        if not counts_by_label:
            raise OptionError("per_label", "is empty")
        codes, counts = [], []
        for label, count in counts_by_label.items():
            if not isinstance(count, numbers.Real) or isinstance(count, bool) or int(count) != count or count <= 0:
                raise OptionError("per_label", f"count for label {label!r} must be a positive integer; got {count!r}")
            codes.append(_label_code(spec, label, "per_label"))
            counts.append(int(count))
        n = int(sum(counts))
        if request.n is not None and request.n != n:  # both say how many cells: they must agree (n was dropped)
            raise OptionError(
                "n",
                f"is {request.n} but {{per_label}} asks for {n} cells; give one of them (or the same number in both)",
                refs=("per_label",),
            )
        if n > MAX_CELLS:
            raise OptionError("per_label", f"asks for {n} cells; the limit is {MAX_CELLS}")
        used = sorted(set(codes))
        return Plan(
            request, n, min(batch_size, n), space, [spec.labels[c] for c in used],
            counts=np.asarray(counts, dtype=np.int64), count_codes=np.asarray(codes, dtype=np.int64),
        )  # fmt: skip
    n = _require_n(request)
    if request.label is not None:
        code = _label_code(spec, request.label)
        return Plan(request, n, min(batch_size, n), space, [spec.labels[code]], fixed_code=code)
    proportions = np.asarray(spec.label_proportions, dtype=np.float64)
    possible = [label for label, p in zip(spec.labels, proportions) if p > 0]
    return Plan(request, n, min(batch_size, n), space, possible, proportions=proportions / proportions.sum())


def _require_n(request: GenerationRequest) -> int:
    if request.n is None:
        raise OptionError("n", "is needed: say how many cells to generate")
    return int(request.n)


def request_from(
    n: int | None = None,
    labels: str | Mapping[str, int] | None = None,
    **options: Any,
) -> GenerationRequest:
    """A request from VAExprs-style arguments: labels None (training proportions), a label, or {label: count}
    (with an n, it must be their total)."""
    if isinstance(labels, Mapping):
        return GenerationRequest(n=n, per_label=dict(labels), **options)  # type: ignore[arg-type]
    if labels is not None and not isinstance(labels, (str, int, np.integer)):
        # a list would be read as one label named "['a', 'b']"; its counts are what the caller means
        raise OptionError(
            "label",
            f"must be one label name or {{label: count}}; got a {type(labels).__name__} (for one cell per entry, "
            "pass collections.Counter(labels))",
        )
    return GenerationRequest(n=n, label=None if labels is None else str(labels), **options)
