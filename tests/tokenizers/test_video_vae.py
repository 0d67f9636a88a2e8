"""The causal video VAE: geometry, causality, chunked coding and training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from o1 import configs
from o1.tokenizers import video_vae

# The tiny config's geometry (t_down 4, s_down 4, 33 frames of 32x32) with narrow layers.
CONFIG = configs.get("tiny", ["video_vae.widths=[8,16]"])
VAE = CONFIG.video_vae
T, H, W = CONFIG.num_frames, CONFIG.data.height, CONFIG.data.width


def _randomized_model(seed: int = 0) -> video_vae.VideoVAE:
    """A VAE whose every parameter is perturbed.

    At init the residual branches are zero, so time mixing is off; perturbing every weight
    makes causality and caching checks exercise every path.
    """
    model = video_vae.VideoVAE(VAE, rngs=nnx.Rngs(seed))
    params = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    nnx.update(model, jax.tree.unflatten(treedef, leaves))
    return model


@pytest.fixture(scope="module")
def model():
    return _randomized_model()


@pytest.fixture(scope="module")
def video():
    return jax.random.uniform(jax.random.key(7), (2, T, H, W, 3), minval=-1.0, maxval=1.0)


def _group(frame: int) -> int:
    """The latent frame a video frame belongs to: frame 0 alone, then t_down at a time."""
    return 0 if frame == 0 else 1 + (frame - 1) // VAE.t_down


def test_clip_and_image_shapes(model, video):
    h, w, c = H // VAE.s_down, W // VAE.s_down, VAE.channels
    mean, logvar, _ = model.encode(video)
    assert mean.shape == logvar.shape == (2, CONFIG.num_video_latents, h, w, c) == (2, 9, 8, 8, 4)
    recon, _ = model.decode(mean)
    assert recon.shape == video.shape

    image_mean, _, _ = model.encode(video[:, :1])
    assert image_mean.shape == (2, 1, h, w, c)
    assert model.decode(image_mean)[0].shape == (2, 1, H, W, 3)
    # An image is the first frame of a video: it gets that video's first latent frame, up to
    # float32 rounding (the two calls run convolutions of different shapes; measured 1.4e-6).
    np.testing.assert_allclose(image_mean[:, 0], mean[:, 0], rtol=1e-5, atol=1e-5)


def test_frame_counts_that_do_not_fit_the_groups_are_rejected(model, video):
    with pytest.raises(ValueError, match="1 \\+ 4 \\* m frames"):
        model.encode(video[:, :4])
    _, _, cache = model.encode(video[:, :5])
    with pytest.raises(ValueError, match="multiple of t_down=4"):
        model.encode(video[:, 5:8], cache)


@pytest.mark.parametrize("frame", [0, 1, 4, 5, 20, 32])
def test_encoder_is_causal(model, video, frame):
    mean, _, _ = model.encode(video)
    bumped, _, _ = model.encode(video.at[:, frame].add(0.5))
    group = _group(frame)
    np.testing.assert_array_equal(bumped[:, :group], mean[:, :group])
    assert np.abs(bumped[:, group] - mean[:, group]).max() > 1e-3


@pytest.mark.parametrize("latent", [0, 1, 5, 8])
def test_decoder_is_causal(model, video, latent):
    z, _, _ = model.encode(video)
    recon, _ = model.decode(z)
    bumped, _ = model.decode(z.at[:, latent].add(0.5))
    first_frame = 0 if latent == 0 else 1 + VAE.t_down * (latent - 1)
    np.testing.assert_array_equal(bumped[:, :first_frame], recon[:, :first_frame])
    assert np.abs(bumped[:, first_frame] - recon[:, first_frame]).max() > 1e-3


@pytest.mark.parametrize("chunk_latents", [2, 4])
def test_chunked_coding_equals_one_shot(model, video, chunk_latents):
    mean, logvar, _ = model.encode(video)
    chunked_mean, chunked_logvar = video_vae.encode_chunked(model, video, chunk_latents)
    np.testing.assert_allclose(chunked_mean, mean, atol=1e-5, rtol=0)
    np.testing.assert_allclose(chunked_logvar, logvar, atol=1e-5, rtol=0)

    recon, _ = model.decode(mean)
    chunked = video_vae.decode_chunked(model, mean, chunk_latents)
    assert chunked.shape == recon.shape
    np.testing.assert_allclose(chunked, recon, atol=1e-5, rtol=0)


def _moving_squares(batch: int) -> jax.Array:
    """Bright squares sliding right over a dark background, [B, T, H, W, 3] in [-1, 1]."""
    ys, xs = jnp.mgrid[:H, :W]
    frames = []
    for i in range(T):
        inside = (jnp.abs(ys - 12) < 4) & (jnp.abs(xs - 4 - (i % 24)) < 4)
        frames.append(jnp.where(inside[..., None], jnp.array([0.8, 0.2, -0.4]), -0.8))
    clip = jnp.stack(frames)
    return jnp.stack([jnp.roll(clip, 6 * b, axis=1) for b in range(batch)])


def test_training_reduces_the_loss():
    model = video_vae.VideoVAE(VAE, rngs=nnx.Rngs(0))
    steps = 60
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    video = _moving_squares(2)

    @nnx.jit
    def train_step(model, opt, key):
        grads, metrics = nnx.grad(video_vae.loss_fn, has_aux=True)(model, video, key,
                                                                  VAE.kl_weight)
        opt.update(model, grads)
        return metrics

    key = jax.random.key(0)
    history = [train_step(model, opt, k) for k in jax.random.split(key, steps)]
    first, last = history[0], history[-1]
    assert last["loss"] < 0.3 * first["loss"], (first, last)
    assert last["psnr"] > first["psnr"] + 5.0, (first, last)
    assert np.isfinite(float(last["kl"]))
