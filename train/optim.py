"""The optimizer of every model o1 trains: AdamW or Muon on a warm-up + cosine schedule.

Each trainer states its model's facts (which weights decay, which are Muon's matrices and
along which axes) and its recipe (clipping, skipping non-finite steps); the transformations
themselves are built here only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

OPTIMIZERS = ("adamw", "muon")


def schedule(peak: float, steps: int, warmup: int, end_ratio: float) -> optax.Schedule:
    """0 -> `peak` linearly over `warmup` steps, then cosine to `end_ratio * peak` at `steps`."""
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(steps, warmup + 1),
                                              peak * end_ratio)


def path_names(path) -> list[str]:
    """A pytree key path as names, without the `value` of nnx Variables."""
    names = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    return [n for n in names if n != "value"]


def last_axis_out(params):
    """Muon's matrix view of every weight with 2+ axes: all axes but the last reduced (dense
    [in, out], conv [*kernel, in, out]); None (the Adam path) for biases and scales."""
    def dims(x):
        if x.ndim >= 2:
            return optax.contrib.MuonDimensionNumbers(tuple(range(x.ndim - 1)), (x.ndim - 1,))
        return None
    return jax.tree.map(dims, params)


def make_optimizer(name: str, learning_rate: optax.Schedule, *, b1: float = 0.9, b2: float,
                   weight_decay: float = 0.0, decay_mask: Callable[[Any], Any] | None = None,
                   muon_dimensions: Callable[[Any], Any] = last_axis_out,
                   adam_learning_rate: optax.Schedule | None = None,
                   consistent_rms: float | None = None, clip: float | None = None,
                   skip_non_finite: bool = False) -> optax.GradientTransformation:
    """AdamW, or Muon with AdamW on what `muon_dimensions` maps to None.

    Args:
      name: "adamw" or "muon".
      learning_rate: the (Muon's, with muon) learning-rate schedule.
      b1, b2: Adam's moment decay rates.
      weight_decay: decoupled weight decay, of the leaves `decay_mask` marks True (all if None).
      muon_dimensions: params -> each leaf's MuonDimensionNumbers, or None for AdamW.
      adam_learning_rate: with muon, the AdamW leaves' schedule (default `learning_rate`).
      consistent_rms: with muon, scale updates to this RMS (None: Muon's own shape scaling).
      clip: clip gradients to this global norm first (None: no clipping).
      skip_non_finite: a step with non-finite gradients leaves parameters and moments untouched
        and is counted (`total_notfinite` of the outer state).
    """
    if name == "muon":
        tx = optax.contrib.muon(
            learning_rate, weight_decay=weight_decay, weight_decay_mask=decay_mask,
            adam_b1=b1, adam_b2=b2, adam_weight_decay=weight_decay,
            adam_learning_rate=adam_learning_rate, muon_weight_dimension_numbers=muon_dimensions,
            consistent_rms=consistent_rms)
    elif name == "adamw":
        tx = optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay, mask=decay_mask)
    else:
        raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")
    if clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    if skip_non_finite:
        tx = optax.apply_if_finite(tx, max_consecutive_errors=2 ** 30)
    return tx
