"""Creating weight matrices with their logical sharding axes."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx


def dense(rngs: nnx.Rngs, shape: Sequence[int], axes: Sequence[str | None],
          std: float) -> nnx.Param:
    """A float32 weight drawn from N(0, std^2) (zeros when std is 0), annotated with `axes`."""
    init = nnx.initializers.normal(std) if std > 0 else nnx.initializers.zeros
    return nnx.Param(nnx.with_partitioning(init, tuple(axes))(
        rngs.params(), tuple(shape), jnp.float32))
