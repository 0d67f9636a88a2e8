"""SwiGLU feed-forward block."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from o1 import sharding as sh
from o1.nn.param import dense


class SwiGLU(nnx.Module):
    """down(silu(x @ gate) * (x @ up)); D model width, M hidden width."""

    def __init__(self, d_model: int, mlp_dim: int, std: float, out_std: float, dtype,
                 rngs: nnx.Rngs):
        self.gate = dense(rngs, (d_model, mlp_dim), (sh.EMBED, sh.MLP), std)
        self.up = dense(rngs, (d_model, mlp_dim), (sh.EMBED, sh.MLP), std)
        self.down = dense(rngs, (mlp_dim, d_model), (sh.MLP, sh.EMBED), out_std)
        self.dtype = dtype

    def __call__(self, x_bld: jax.Array) -> jax.Array:
        gate = jnp.einsum("bld,dm->blm", x_bld, self.gate[...].astype(self.dtype))
        up = jnp.einsum("bld,dm->blm", x_bld, self.up[...].astype(self.dtype))
        h_blm = sh.shard(jax.nn.silu(gate) * up, sh.BATCH, sh.LENGTH, sh.MLP)
        return jnp.einsum("blm,md->bld", h_blm, self.down[...].astype(self.dtype))
