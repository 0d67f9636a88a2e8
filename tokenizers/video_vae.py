"""Causal video VAE: clips of T = 1 + t_down * n frames <-> n + 1 latent frames.

Axis letters used in tensor names:

  B batch, T video frames, t latent frames, H W pixels, h w latent grid (H / s_down, W / s_down),
  y x the grid of whatever resolution level a layer works at, C channels.

Time is causal (docs/design.md, "Clip geometry and time alignment"): the first frame is encoded
alone, so an image is a one-frame video, then each group of `t_down` frames becomes one latent
frame. To treat every latent frame the same way, the clip's front is padded with `t_down - 1`
copies of frame 0, making group 0 a still "clip" of frame 0, and each group of `t_down` frames is
folded into channels. From then on the network works per latent frame:

  * spatial layers (convolutions, norms, down/upsampling) see one latent frame at a time;
  * causal temporal convolutions mix latent frame i with frames i-1, ..., i-k+1 only.

Nothing pools over time, so latent i depends on frames 0 .. t_down * i only, and a clip can be
encoded or decoded in chunks: each temporal convolution keeps its last k-1 input frames in a
cache, which makes chunked results equal one-shot results and keeps memory independent of the
clip length.

Space: the `widths` of the config name the resolution levels, coarsest last; each level halves
the resolution of the previous one and the finest level works at H / p with
p = s_down / 2 ** (len(widths) - 1). The p x p pixel patches are folded into channels
(space-to-depth) before the first convolution, which is much cheaper on a CPU than
convolutions with few channels at full resolution and loses nothing: the first convolution sees
every pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from o1.config import VideoVAEConfig
from o1.tokenizers import gaussian

# A cache: for every causal temporal convolution, in call order, its last k-1 input frames
# [B, k-1, y, x, C].
Cache = tuple[jax.Array, ...]

LOGVAR_INIT = -8.0  # initial posterior log-variance
TEMPORAL_KERNEL = 3  # latent frames a causal temporal convolution sees (itself and 2 before)


def _space_to_depth(x_bthwc: jax.Array, p: int) -> jax.Array:
    """[B, t, H, W, C] -> [B, t, H/p, W/p, p*p*C]."""
    b, t, h, w, c = x_bthwc.shape
    x = x_bthwc.reshape(b, t, h // p, p, w // p, p, c)
    return x.transpose(0, 1, 2, 4, 3, 5, 6).reshape(b, t, h // p, w // p, p * p * c)


def _depth_to_space(x_bthwc: jax.Array, p: int) -> jax.Array:
    """[B, t, h, w, p*p*C] -> [B, t, h*p, w*p, C], the inverse of `_space_to_depth`."""
    b, t, h, w, c = x_bthwc.shape
    x = x_bthwc.reshape(b, t, h, w, p, p, c // (p * p))
    return x.transpose(0, 1, 2, 4, 3, 5, 6).reshape(b, t, h * p, w * p, c // (p * p))


def fold_time(video_bThwc: jax.Array, t_down: int, first: bool) -> jax.Array:
    """Groups frames into latent-frame slots: [B, T, H, W, 3] -> [B, t, H, W, t_down*3].

    Args:
      video_bThwc: frames. T = 1 + t_down * m when `first` (the clip starts here), else
        T = t_down * m (a continuation chunk).
      t_down: frames per latent frame.
      first: pad the front with t_down - 1 copies of frame 0, so frame 0 fills a group alone.
    """
    b, frames, h, w, c = video_bThwc.shape
    if first:
        if (frames - 1) % t_down:
            raise ValueError(f"the first chunk of a clip needs 1 + {t_down} * m frames "
                             f"(t_down={t_down}), got {frames}; trim it to "
                             f"{1 + t_down * ((frames - 1) // t_down)} frames")
        pad = jnp.repeat(video_bThwc[:, :1], t_down - 1, axis=1)
        video_bThwc = jnp.concatenate([pad, video_bThwc], axis=1)
    elif frames % t_down:
        raise ValueError(f"a continuation chunk needs a multiple of t_down={t_down} frames, "
                         f"got {frames}")
    t = video_bThwc.shape[1] // t_down
    x = video_bThwc.reshape(b, t, t_down, h, w, c).transpose(0, 1, 3, 4, 2, 5)
    return x.reshape(b, t, h, w, t_down * c)


def unfold_time(x_bthwc: jax.Array, t_down: int, first: bool) -> jax.Array:
    """The inverse of `fold_time`: [B, t, H, W, t_down*3] -> [B, T, H, W, 3].

    T = 1 + t_down * (t - 1) when `first` (the padding copies of frame 0 are dropped), else
    t_down * t.
    """
    b, t, h, w, c = x_bthwc.shape
    x = x_bthwc.reshape(b, t, h, w, t_down, c // t_down).transpose(0, 1, 4, 2, 3, 5)
    x = x.reshape(b, t * t_down, h, w, c // t_down)
    return x[:, t_down - 1:] if first else x


def _per_frame(fn, x_bthwc: jax.Array) -> jax.Array:
    """Applies a 2D layer [N, y, x, C] -> [N, y', x', C'] to every latent frame."""
    b, t = x_bthwc.shape[:2]
    y = fn(x_bthwc.reshape(b * t, *x_bthwc.shape[2:]))
    return y.reshape(b, t, *y.shape[1:])


class _ResBlock(nnx.Module):
    """Pre-norm residual block of two 3x3 convolutions inside each latent frame."""

    def __init__(self, width: int, norm: bool, *, rngs: nnx.Rngs):
        self.norm = nnx.RMSNorm(width, rngs=rngs) if norm else (lambda x: x)
        self.conv1 = nnx.Conv(width, width, (3, 3), rngs=rngs)
        # Zero-initialized so every block starts as the identity: a deep stack then trains as
        # fast as a shallow one in the first steps.
        self.conv2 = nnx.Conv(width, width, (3, 3), kernel_init=nnx.initializers.zeros,
                              rngs=rngs)

    def __call__(self, x_bthwc: jax.Array) -> jax.Array:
        h = nnx.silu(self.norm(x_bthwc))
        h = _per_frame(self.conv1, h)
        h = _per_frame(self.conv2, nnx.silu(h))
        return x_bthwc + h


class _CausalTimeMix(nnx.Module):
    """Residual causal convolution over latent frames: frame i sees frames i-k+1 .. i.

    Implemented as one matmul over the k time-shifted copies stacked on channels. Without a
    cache (the first chunk of a clip) the past is filled with copies of frame 0, i.e. the clip
    is treated as having been still before it started, which matches how frame 0 is padded.
    """

    def __init__(self, width: int, kernel: int, norm: bool, *, rngs: nnx.Rngs):
        self.kernel = kernel
        self.norm = nnx.RMSNorm(width, rngs=rngs) if norm else (lambda x: x)
        self.proj = nnx.Linear(kernel * width, width, kernel_init=nnx.initializers.zeros,
                               rngs=rngs)

    def __call__(self, x_bthwc: jax.Array, cache: jax.Array | None
                 ) -> tuple[jax.Array, jax.Array]:
        """[B, t, y, x, C], cache [B, k-1, y, x, C] or None -> same shape, new cache."""
        h = nnx.silu(self.norm(x_bthwc))
        k, t = self.kernel, x_bthwc.shape[1]
        if cache is None:
            cache = jnp.repeat(h[:, :1], k - 1, axis=1)
        h_pad = jnp.concatenate([cache, h], axis=1)  # [B, k-1+t, y, x, C]
        # Shift j looks j frames back; the newest shift comes first on channels.
        stacked = jnp.concatenate([h_pad[:, k - 1 - j:k - 1 - j + t] for j in range(k)], axis=-1)
        return x_bthwc + self.proj(stacked), h_pad[:, t:]


class _Level(nnx.Module):
    """One resolution level: residual blocks per frame, then a causal temporal mix."""

    def __init__(self, width: int, blocks: int, norm: bool, *, rngs: nnx.Rngs):
        self.blocks = nnx.List([_ResBlock(width, norm, rngs=rngs) for _ in range(blocks)])
        self.time = _CausalTimeMix(width, TEMPORAL_KERNEL, norm, rngs=rngs)

    def __call__(self, x_bthwc: jax.Array, cache: jax.Array | None
                 ) -> tuple[jax.Array, jax.Array]:
        for block in self.blocks:
            x_bthwc = block(x_bthwc)
        return self.time(x_bthwc, cache)


def _run_levels(levels: Sequence[_Level], resample: Sequence, x_bthwc: jax.Array,
                cache: Cache | None) -> tuple[jax.Array, Cache]:
    """Runs level 0, resample 0, level 1, ..., threading one cache entry per level."""
    new_cache = []
    for i, level in enumerate(levels):
        x_bthwc, c = level(x_bthwc, None if cache is None else cache[i])
        new_cache.append(c)
        if i < len(resample):
            x_bthwc = resample[i](x_bthwc)
    return x_bthwc, tuple(new_cache)


class _Down(nnx.Module):
    """Halves the resolution: 2x2 space-to-depth, then a linear map to the next width."""

    def __init__(self, width_in: int, width_out: int, *, rngs: nnx.Rngs):
        self.proj = nnx.Linear(4 * width_in, width_out, rngs=rngs)

    def __call__(self, x_bthwc: jax.Array) -> jax.Array:
        return self.proj(_space_to_depth(x_bthwc, 2))


class _Up(nnx.Module):
    """Doubles the resolution: a linear map to 4x the next width, then depth-to-space."""

    def __init__(self, width_in: int, width_out: int, *, rngs: nnx.Rngs):
        self.proj = nnx.Linear(width_in, 4 * width_out, rngs=rngs)

    def __call__(self, x_bthwc: jax.Array) -> jax.Array:
        return _depth_to_space(self.proj(x_bthwc), 2)


class VideoVAE(nnx.Module):
    """Causal video VAE with a diagonal Gaussian posterior.

    Video is float32 in [-1, 1], [B, T, H, W, 3]; latents are [B, t, h, w, C] with
    t = 1 + (T - 1) / t_down for a whole clip, h = H / s_down, w = W / s_down,
    C = cfg.channels.
    """

    def __init__(self, cfg: VideoVAEConfig, *, rngs: nnx.Rngs, enc_blocks: int = 2,
                 dec_blocks: int = 2, norm: bool = True):
        levels = len(cfg.widths)
        if cfg.s_down < 2 ** (levels - 1):
            raise ValueError(
                f"video_vae.widths has {levels} resolution levels, which needs s_down >= "
                f"{2 ** (levels - 1)}, got s_down={cfg.s_down}; use at most "
                f"{int(math.log2(cfg.s_down)) + 1} widths")
        self.t_down = cfg.t_down
        self.s_down = cfg.s_down
        self.channels = cfg.channels
        self.patch = cfg.s_down // 2 ** (levels - 1)
        folded = 3 * cfg.t_down * self.patch**2  # channels of one latent frame's pixels
        w = cfg.widths

        self.enc_in = nnx.Linear(folded, w[0], rngs=rngs)
        self.enc_levels = nnx.List([_Level(c, enc_blocks, norm, rngs=rngs) for c in w])
        self.enc_down = nnx.List([_Down(a, b, rngs=rngs)
                                  for a, b in zip(w[:-1], w[1:], strict=True)])
        self.enc_norm = nnx.RMSNorm(w[-1], rngs=rngs)
        self.enc_mean = nnx.Conv(w[-1], cfg.channels, (3, 3), rngs=rngs)
        # The posterior starts nearly deterministic (std e^-4): with unit noise on the latents
        # the decoder would first have to wait for the small KL-weighted pull to shrink it.
        self.enc_logvar = nnx.Conv(w[-1], cfg.channels, (3, 3),
                                   kernel_init=nnx.initializers.zeros,
                                   bias_init=nnx.initializers.constant(LOGVAR_INIT), rngs=rngs)

        self.dec_in = nnx.Conv(cfg.channels, w[-1], (3, 3), rngs=rngs)
        self.dec_levels = nnx.List([_Level(c, dec_blocks, norm, rngs=rngs) for c in w[::-1]])
        self.dec_up = nnx.List([_Up(a, b, rngs=rngs)
                                for a, b in zip(w[:0:-1], w[-2::-1], strict=True)])
        self.dec_norm = nnx.RMSNorm(w[0], rngs=rngs)
        self.dec_out = nnx.Linear(w[0], folded, rngs=rngs)

    def encode(self, video_bThwc: jax.Array, cache: Cache | None = None
               ) -> tuple[jax.Array, jax.Array, Cache]:
        """Encodes a clip, or the next chunk of one.

        Args:
          video_bThwc: [B, T, H, W, 3] in [-1, 1]. T = 1 + t_down * m for the first chunk of a
            clip (cache None; m = 0 is an image), T = t_down * m for a continuation.
          cache: what the previous chunk's call returned, or None at the start of a clip.

        Returns:
          mean and logvar of the posterior, each [B, t, h, w, C] with t = m + 1 for a first
          chunk and m for a continuation, and the cache for the next chunk.
        """
        x = fold_time(video_bThwc, self.t_down, first=cache is None)  # [B, t, H, W, 3*t_down]
        x = _space_to_depth(x, self.patch)
        x = _per_frame(self.enc_in, x)
        x, new_cache = _run_levels(self.enc_levels, self.enc_down, x, cache)
        x = nnx.silu(self.enc_norm(x))
        mean = _per_frame(self.enc_mean, x)  # [B, t, h, w, C]
        logvar = _per_frame(self.enc_logvar, x)
        # Bounded so exp(logvar) can neither overflow nor underflow to a zero gradient.
        return mean, jnp.clip(logvar, -30.0, 20.0), new_cache

    def decode(self, z_bthwc: jax.Array, cache: Cache | None = None
               ) -> tuple[jax.Array, Cache]:
        """Decodes latents, or the next chunk of them.

        Args:
          z_bthwc: [B, t, h, w, C].
          cache: what the previous chunk's call returned, or None at the start of a clip.

        Returns:
          video [B, T, H, W, 3] (about [-1, 1]) with T = 1 + t_down * (t - 1) for a first chunk
          and t_down * t for a continuation, and the cache for the next chunk.
        """
        first = cache is None
        x = _per_frame(self.dec_in, z_bthwc)
        x, new_cache = _run_levels(self.dec_levels, self.dec_up, x, cache)
        x = _per_frame(self.dec_out, nnx.silu(self.dec_norm(x)))
        x = _depth_to_space(x, self.patch)  # [B, t, H, W, 3*t_down]
        return unfold_time(x, self.t_down, first), new_cache

    def __call__(self, video_bThwc: jax.Array, key: jax.Array
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Training pass: encode, draw z = mean + std * noise, decode.

        Args:
          video_bThwc: [B, T, H, W, 3] in [-1, 1], T = 1 + t_down * m.
          key: PRNG key for the posterior sample.

        Returns:
          reconstruction [B, T, H, W, 3], and the posterior mean and logvar [B, t, h, w, C].
        """
        mean, logvar, _ = self.encode(video_bThwc)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        recon, _ = self.decode(z)
        return recon, mean, logvar


def loss_fn(model: VideoVAE, video_bThwc: jax.Array, key: jax.Array, kl_weight: float
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Reconstruction + kl_weight * KL(q(z|x) || N(0, I)).

    Args:
      model: the VAE.
      video_bThwc: [B, T, H, W, 3] in [-1, 1], T = 1 + t_down * m.
      key: PRNG key for the posterior sample.
      kl_weight: weight of the KL term (mean over latent elements) against the reconstruction
        term (mean over pixels).

    Returns:
      the scalar loss and metrics: 'recon', 'kl', 'psnr' (dB, on the [0, 1] pixel scale) and
      'loss'.
    """
    recon, mean, logvar = model(video_bThwc, key)
    err = recon - video_bThwc
    mse = jnp.mean(jnp.square(err))
    recon_loss = mse
    kl = gaussian.kl_to_standard_normal(mean, logvar)
    loss = recon_loss + kl_weight * kl
    # [-1, 1] -> [0, 1] halves errors, so the MSE on the [0, 1] scale is mse / 4.
    psnr = 10.0 * jnp.log10(4.0 / mse)
    return loss, {"loss": loss, "recon": recon_loss, "kl": kl, "psnr": psnr}


@nnx.jit
def _encode_chunk(model: VideoVAE, video_bThwc: jax.Array, cache: Cache | None):
    return model.encode(video_bThwc, cache)


@nnx.jit
def _decode_chunk(model: VideoVAE, z_bthwc: jax.Array, cache: Cache | None):
    return model.decode(z_bthwc, cache)


def encode_chunked(model: VideoVAE, video_bThwc: jax.Array, chunk_latents: int
                   ) -> tuple[jax.Array, jax.Array]:
    """Encodes a whole clip `chunk_latents` latent frames at a time; equals `model.encode`.

    Args:
      model: the VAE.
      video_bThwc: [B, T, H, W, 3] in [-1, 1], T = 1 + t_down * n.
      chunk_latents: latent frames per call; memory is bounded by this, not by T.

    Returns:
      mean and logvar, each [B, n + 1, h, w, C].
    """
    if chunk_latents <= 0:
        raise ValueError(f"chunk_latents must be positive, got {chunk_latents}")
    t_down, frames = model.t_down, video_bThwc.shape[1]
    # The first chunk carries frame 0 alone plus chunk_latents - 1 groups.
    bounds = [0, 1 + t_down * (chunk_latents - 1)]
    while bounds[-1] < frames:
        bounds.append(bounds[-1] + t_down * chunk_latents)
    bounds[-1] = frames
    means, logvars, cache = [], [], None
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        mean, logvar, cache = _encode_chunk(model, video_bThwc[:, start:stop], cache)
        means.append(mean)
        logvars.append(logvar)
    return jnp.concatenate(means, axis=1), jnp.concatenate(logvars, axis=1)


def decode_chunked(model: VideoVAE, z_bthwc: jax.Array, chunk_latents: int) -> jax.Array:
    """Decodes latents `chunk_latents` latent frames at a time; equals `model.decode`.

    Args:
      model: the VAE.
      z_bthwc: [B, t, h, w, C].
      chunk_latents: latent frames per call; memory is bounded by this, not by t.

    Returns:
      video [B, 1 + t_down * (t - 1), H, W, 3].
    """
    if chunk_latents <= 0:
        raise ValueError(f"chunk_latents must be positive, got {chunk_latents}")
    videos, cache = [], None
    for start in range(0, z_bthwc.shape[1], chunk_latents):
        video, cache = _decode_chunk(model, z_bthwc[:, start:start + chunk_latents], cache)
        videos.append(video)
    return jnp.concatenate(videos, axis=1)
