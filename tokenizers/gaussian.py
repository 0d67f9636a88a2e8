"""The diagonal Gaussian posterior shared by the video and audio VAEs."""

import jax
import jax.numpy as jnp


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """Mean over elements of KL(N(mean, exp(logvar)) || N(0, 1)); both [..., C]."""
    return 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
