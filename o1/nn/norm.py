"""RMSNorm, computed in float32 whatever the compute dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class RMSNorm(nnx.Module):
    """x / rms(x) * scale over the last axis.

    Args:
      dim: size of the normalized (last) axis.
      axis_name: logical axis of the scale parameter (o1.sharding).
      eps: added to the mean square.
    """

    def __init__(self, dim: int, axis_name: str | None, eps: float = 1e-6):
        self.scale = nnx.Param(nnx.with_partitioning(nnx.initializers.ones, (axis_name,))(
            jax.random.key(0), (dim,), jnp.float32))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (normed * self.scale[...]).astype(x.dtype)
