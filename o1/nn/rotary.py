"""Multi-axis rotary position embeddings.

The head's H features form H/2 rotation pairs (feature i with feature i + H/2). The pairs are
split into three sections, one per position axis (time, row, column); inside a section the
frequencies form the usual geometric ladder from 1 down to 1/theta. Text tokens carry the same
value on all three axes, so for them this is ordinary 1-D RoPE up to the frequency ladder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def frequencies(sections: tuple[int, ...], theta: float) -> np.ndarray:
    """float32 [H/2]: the angular frequency of every rotation pair, section by section."""
    return np.concatenate([theta ** (-np.arange(n, dtype=np.float64) / max(n, 1))
                           for n in sections]).astype(np.float32)


def apply(x_blnh: jax.Array, positions_bl3: jax.Array, sections: tuple[int, ...],
          theta: float) -> jax.Array:
    """Rotates queries or keys by their (time, row, column) positions.

    Args:
      x_blnh: [B, L, N, H] queries or keys.
      positions_bl3: int [B, L, 3] positions on the three axes.
      sections: rotation pairs per axis, summing to H / 2.
    """
    freqs = jnp.asarray(frequencies(sections, theta))  # [H/2]
    axis_of_pair = np.repeat(np.arange(len(sections)), sections)  # [H/2]
    pos = positions_bl3.astype(jnp.float32)[..., axis_of_pair]  # [B, L, H/2]
    angle = (pos * freqs)[:, :, None, :]  # [B, L, 1, H/2]
    sin, cos = jnp.sin(angle), jnp.cos(angle)
    x = x_blnh.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_blnh.dtype)
