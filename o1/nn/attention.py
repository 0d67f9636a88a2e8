"""Multi-head attention with grouped KV heads, QK-norm, multi-axis RoPE and a KV cache.

Axes: B batch, L query positions, S key positions, D model width, N query heads,
K key/value heads (N = K * G), H head width; P and Q are L and S padded for cuDNN.

Two kernels compute the same function (`ModelConfig.attention`):
  xla    the reference: logits and probabilities of every head, [B, N, L, S], are
         materialized (and kept for the backward pass).
  cudnn  cuDNN's fused flash attention: logits live only in on-chip tiles. What is
         materialized is the mask as an additive bias, [B, 1, P, Q] in the compute dtype
         (`jax.nn.dot_product_attention` turns a boolean mask into 0 / -2^41 and cuDNN
         broadcasts it over heads), its gradient of the same shape in the backward pass
         (cuDNN always returns one, and zeros for batches over 1: it is discarded, as the mask
         and the locality bias are constants), and, with `media_locality`, the float bias
         plus mask as [B, N, P, Q].
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from o1 import sharding as sh
from o1.config import ConfigError, ModelConfig
from o1.nn import rotary
from o1.nn.norm import RMSNorm
from o1.nn.param import dense

KVCache = dict[str, jax.Array]  # {"k": [B, S, K, H], "v": [B, S, K, H]}

# jax runs cuDNN's fused attention with a bias (a mask is one) under differentiation only when
# the query and key lengths are even (`check_is_flash_attention` in
# jax/_src/cudnn/fused_attention_stablehlo.py, jax 0.10.2); the cuDNN path pads both up to a
# multiple of this. That also keeps keys at 2 or more, as cuDNN's backward pass needs.
CUDNN_LENGTH_MULTIPLE = 2
_CUDNN_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


class Attention(nnx.Module):
    """Self-attention over a boolean mask, through `jax.nn.dot_product_attention` with the
    kernel `ModelConfig.attention` picks (see the module docstring)."""

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
        self.attention = cfg.attention  # xla, cudnn or auto: resolved per call by `kernel`
        # Pad query and key lengths up to a multiple of this; None = what the kernel needs
        # (CUDNN_LENGTH_MULTIPLE for cuDNN, no padding for xla). Tests set it to run the
        # cuDNN path's padding through the xla kernel.
        self.length_multiple: int | None = None

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
        impl = kernel(self.attention, dt, q.shape[-1])
        multiple = self.length_multiple
        if multiple is None:
            multiple = CUDNN_LENGTH_MULTIPLE if impl == "cudnn" else 1
        out = padded_attention(q, k.astype(dt), v.astype(dt), mask_bls,
                               None if bias_bnls is None else bias_bnls.astype(dt),
                               multiple=multiple, implementation=impl)
        out = sh.shard(out, sh.BATCH, sh.LENGTH, sh.HEADS, sh.HEAD_DIM)
        return jnp.einsum("blnh,nhd->bld", out, self.o[...].astype(dt)), cache


def padded_attention(q_blnh: jax.Array, k_bskh: jax.Array, v_bskh: jax.Array,
                     mask_bls: jax.Array, bias_bnls: jax.Array | None, *, multiple: int,
                     implementation: str) -> jax.Array:
    """`jax.nn.dot_product_attention` with L and S padded up to multiples of `multiple`.

    Padded keys are zeros that no query sees; padded queries see the real keys (so no softmax
    row is empty) and are sliced off. The result and its gradients are those of the unpadded
    call. The mask goes in as [B, 1, P, Q], never per head.

    Args:
      q_blnh: [B, L, N, H] queries; k_bskh, v_bskh: [B, S, K, H] keys and values.
      mask_bls: bool [B, L, S]; bias_bnls: float [B, N or 1, L, S] or None.
      multiple: pad L and S up to multiples of this (1 = no padding).
      implementation: "xla" or "cudnn".

    Returns:
      [B, L, N, H].
    """
    length, keys = q_blnh.shape[1], k_bskh.shape[1]
    pad_l, pad_s = -length % multiple, -keys % multiple
    if pad_l or pad_s:
        q_blnh = jnp.pad(q_blnh, ((0, 0), (0, pad_l), (0, 0), (0, 0)))
        k_bskh = jnp.pad(k_bskh, ((0, 0), (0, pad_s), (0, 0), (0, 0)))
        v_bskh = jnp.pad(v_bskh, ((0, 0), (0, pad_s), (0, 0), (0, 0)))
        mask_bls = jnp.pad(mask_bls, ((0, 0), (0, pad_l), (0, 0)), constant_values=True)
        mask_bls = jnp.pad(mask_bls, ((0, 0), (0, 0), (0, pad_s)), constant_values=False)
        if bias_bnls is not None:
            bias_bnls = jnp.pad(bias_bnls, ((0, 0), (0, 0), (0, pad_l), (0, pad_s)))
    out = jax.nn.dot_product_attention(
        q_blnh, k_bskh, v_bskh, bias=bias_bnls, mask=mask_bls[:, None],
        scale=1 / math.sqrt(q_blnh.shape[-1]), implementation=implementation)
    return out[:, :length]


def kernel(attention: str, dtype, head_dim: int) -> str:
    """The kernel ("xla" or "cudnn") of a call site with `ModelConfig.attention` = `attention`,
    compute `dtype` and `head_dim`, on the default backend.

    auto takes cuDNN wherever it applies, else xla; cudnn raises where it cannot run.
    Lengths never rule cuDNN out: `padded_attention` pads them.
    """
    if attention == "xla":
        return "xla"
    why = cudnn_unsupported(dtype, head_dim)
    if why is None:
        return "cudnn"
    if attention == "cudnn":
        raise ConfigError(f"model.attention=cudnn cannot run here: {why}. Use "
                          f"model.attention=auto (cuDNN where it applies, else xla) or xla")
    return "xla"


def cudnn_unsupported(dtype, head_dim: int) -> str | None:
    """Why cuDNN's fused attention cannot serve a call site, or None if it can.

    The conditions jax checks before it runs the kernel (`check_layout` and
    `check_is_flash_attention` in jax/_src/cudnn/fused_attention_stablehlo.py) that padding
    cannot meet. Grouped KV heads, a [B, 1 or N, L, S] bias and any query/key lengths (after
    padding) are all within them. jax also refuses sharded sequence or head-width axes; the
    sharding rules never split either (`o1.sharding.RULES`).
    """
    capability = _cuda_capability()
    if capability is None:
        return f"cuDNN needs an NVIDIA GPU and the JAX backend is {jax.default_backend()}"
    if jnp.dtype(dtype) not in _CUDNN_DTYPES:
        return f"cuDNN needs bfloat16 or float16 compute and model.dtype is {jnp.dtype(dtype)}"
    widest = 256 if capability >= (9, 0) else 128
    if head_dim % 8 or head_dim > widest:
        return (f"cuDNN on this GPU needs model.head_dim a multiple of 8 and at most {widest}, "
                f"got {head_dim}")
    return None


@functools.cache
def _cuda_capability() -> tuple[int, int] | None:
    """(major, minor) compute capability of the first GPU, or None off NVIDIA GPUs."""
    if jax.default_backend() != "gpu":
        return None
    try:
        major, minor = str(jax.devices()[0].compute_capability).split(".")[:2]
        return int(major), int(minor)
    except (AttributeError, ValueError):  # ROCm devices name an architecture instead
        return None


def empty_cache(batch: int, length: int, cfg: ModelConfig, dtype=None) -> KVCache:
    """Zeroed keys and values for `length` positions of one layer."""
    shape = (batch, length, cfg.num_kv_heads, cfg.head_dim)
    dtype = dtype or jnp.dtype(cfg.dtype)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
