"""Multi-head attention with grouped KV heads, QK-norm, multi-axis RoPE and a KV cache.

Axes: B batch, L query positions, S key positions, D model width, N query heads,
K key/value heads (N = K * G), H head width.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from o1 import sharding as sh
from o1.config import ModelConfig
from o1.nn import rotary
from o1.nn.norm import RMSNorm
from o1.nn.param import dense

KVCache = dict[str, jax.Array]  # {"k": [B, S, K, H], "v": [B, S, K, H]}


class Attention(nnx.Module):
    """Self-attention over a boolean mask, through `jax.nn.dot_product_attention`."""

    def __init__(self, cfg: ModelConfig, out_std: float, rngs: nnx.Rngs):
        d, n, k, h = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q = dense(rngs, (d, n, h), (sh.EMBED, sh.HEADS, sh.HEAD_DIM), cfg.init_std)
        self.k = dense(rngs, (d, k, h), (sh.EMBED, sh.KV_HEADS, sh.HEAD_DIM), cfg.init_std)
        self.v = dense(rngs, (d, k, h), (sh.EMBED, sh.KV_HEADS, sh.HEAD_DIM), cfg.init_std)
        self.o = dense(rngs, (n, h, d), (sh.HEADS, sh.HEAD_DIM, sh.EMBED), out_std)
        self.q_norm = RMSNorm(h, sh.HEAD_DIM, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(h, sh.HEAD_DIM, cfg.norm_eps) if cfg.qk_norm else None
        self.sections = cfg.rotary_sections
        self.theta = cfg.rope_theta
        self.dtype = jnp.dtype(cfg.dtype)
        self.implementation = None if cfg.attention == "auto" else cfg.attention

    def __call__(self, x_bld: jax.Array, positions_bl3: jax.Array, mask_bls: jax.Array,
                 cache: KVCache | None = None, index: jax.Array | int = 0,
                 bias_bnls: jax.Array | None = None) -> tuple[jax.Array, KVCache | None]:
        """Attends from the L new tokens to every visible key.

        Args:
          x_bld: [B, L, D] normalized inputs.
          positions_bl3: int [B, L, 3] rotary positions of the new tokens.
          mask_bls: bool [B, L, S]: query l may see key s. S = L without a cache, else the
            cache length.
          cache: keys and values of earlier tokens; the new ones are written at `index`.
          bias_bnls: float [B, N or 1, L, S] added to the attention logits, or None.

        Returns:
          ([B, L, D] output, the updated cache or None).
        """
        dt = self.dtype
        q = jnp.einsum("bld,dnh->blnh", x_bld, self.q[...].astype(dt))
        k = jnp.einsum("bld,dkh->blkh", x_bld, self.k[...].astype(dt))
        v = jnp.einsum("bld,dkh->blkh", x_bld, self.v[...].astype(dt))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = rotary.apply(q, positions_bl3, self.sections, self.theta)
        k = rotary.apply(k, positions_bl3, self.sections, self.theta)
        q = sh.shard(q, sh.BATCH, sh.LENGTH, sh.HEADS, sh.HEAD_DIM)
        k = sh.shard(k, sh.BATCH, sh.LENGTH, sh.KV_HEADS, sh.HEAD_DIM)
        v = sh.shard(v, sh.BATCH, sh.LENGTH, sh.KV_HEADS, sh.HEAD_DIM)
        if cache is not None:
            start = (0, index, 0, 0)
            k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start)
            v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start)
            cache = {"k": k, "v": v}
        out = jax.nn.dot_product_attention(
            q, k.astype(dt), v.astype(dt), bias=None if bias_bnls is None else bias_bnls.astype(dt),
            mask=mask_bls[:, None], scale=1 / math.sqrt(q.shape[-1]),
            implementation=self.implementation)
        out = sh.shard(out, sh.BATCH, sh.LENGTH, sh.HEADS, sh.HEAD_DIM)
        return jnp.einsum("blnh,nhd->bld", out, self.o[...].astype(dt)), cache


def empty_cache(batch: int, length: int, cfg: ModelConfig, dtype=None) -> KVCache:
    """Zeroed keys and values for `length` positions of one layer."""
    shape = (batch, length, cfg.num_kv_heads, cfg.head_dim)
    dtype = dtype or jnp.dtype(cfg.dtype)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
