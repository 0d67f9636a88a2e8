"""o1.nn.attention: the cuDNN path (its padding run through xla here, the kernel itself on a GPU)
gives the model's loss and gradients that the unpadded xla reference gives, on the rows of
every task; and which kernel each `model.attention` runs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from o1 import configs, losses
from o1.batch import MODEL_INPUTS
from o1.config import TASKS, ConfigError
from o1.model import new_model
from o1.nn import attention
from o1.sequence import SequenceBuilder, random_example

ON_GPU = jax.default_backend() == "gpu"
gpu_only = pytest.mark.skipif(not ON_GPU, reason="cuDNN attention runs on NVIDIA GPUs only")
# Tiny rows hold 406 tokens; one more makes the query and key lengths odd, which cuDNN refuses
# under differentiation unless they are padded.
SEQ_LEN = 407
# Pads those 407 positions (and every cached chunk) by tens, so padded keys and padded query
# rows are plenty when the cuDNN path's padding runs through xla.
MULTIPLE = 64
BF16_EPS = 2.0**-8
SLOPES = "[0.5,0.25,0.125,0]"  # model.media_locality of the tiny model's 4 heads


def tiny(media_attention: str, *overrides: str):
    """The tiny config in bfloat16 (cuDNN's dtype), one block, rows of SEQ_LEN tokens."""
    return configs.get("tiny", ["model.dtype=bfloat16", "model.num_layers=1",
                                f"sequence.seq_len={SEQ_LEN}",
                                f"sequence.media_attention={media_attention}", *overrides])


def every_task_batch(config) -> dict:
    """Rows packing one built example of each task, examples_per_row to a row."""
    builder = SequenceBuilder(config)
    rng = np.random.default_rng(0)
    examples = [builder.build(random_example(config, i), task, rng)
                for i, task in enumerate(TASKS)]
    per_row = config.sequence.examples_per_row
    rows = [examples[i:i + per_row] for i in range(0, len(examples), per_row)]
    return {key: jnp.asarray(value) for key, value in builder.batch(rows, SEQ_LEN).items()}


def using(model, kernel: str, length_multiple: int | None = None):
    """`model` with every block's attention set to `kernel` and `length_multiple`."""
    model.blocks.attn.attention = kernel  # the blocks are one stacked module
    model.blocks.attn.length_multiple = length_multiple
    return model


def loss_and_grads(config, model, batch):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    denom = losses.denominators(batch)

    def loss_of(params):
        model = nnx.merge(graphdef, params, rest)
        return losses.loss_fn(config, model, batch, jax.random.key(0), denom)[0]

    return jax.jit(jax.value_and_grad(loss_of))(params)


def assert_bf16_close(result, reference):
    """Loss within a bfloat16 rounding, and each parameter's gradient within a few roundings
    of the reference gradient's norm."""
    (loss, grads), (ref_loss, ref_grads) = result, reference
    np.testing.assert_allclose(loss, ref_loss, rtol=BF16_EPS)
    flat, ref_flat = jax.tree.leaves_with_path(grads), jax.tree.leaves_with_path(ref_grads)
    for (path, g), (_, r) in zip(flat, ref_flat, strict=True):
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        error = np.linalg.norm(g - r) / max(np.linalg.norm(r), 1e-30)
        assert error <= 4 * BF16_EPS, f"gradient of {jax.tree_util.keystr(path)}: {error:.2e}"


def compare_on_every_task(media_attention: str, kernel: str, multiple: int | None,
                          *overrides: str):
    config = tiny(media_attention, *overrides)
    batch = every_task_batch(config)
    model = new_model(config)
    reference = loss_and_grads(config, using(model, "xla"), batch)
    assert np.isfinite(reference[0])
    assert_bf16_close(loss_and_grads(config, using(model, kernel, multiple), batch), reference)


def cached_outputs(config, model, row, bounds):
    """(logits, velocity) of `row` [1, L] fed chunk by chunk through a KV cache."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, inputs, cache, index):
        out = nnx.merge(graphdef, state)(inputs, cache=cache, index=index)
        return out.logits, out.velocity, out.cache

    cache = model.init_cache(1, row["tokens"].shape[1])
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        chunk = {key: row[key][:, start:end] for key in MODEL_INPUTS}
        logits, velocity, cache = step(state, chunk, cache, jnp.int32(start))
        outputs.append((np.asarray(logits[0]), np.asarray(velocity[0])))
    return [np.concatenate(parts) for parts in zip(*outputs, strict=True)]


def compare_through_the_cache(kernel: str, multiple: int | None):
    """A prefill of an odd-length chunk, then decoding one token at a time (L = 1)."""
    config = tiny("bidirectional", f"model.media_locality={SLOPES}")
    row = {key: value[:1] for key, value in every_task_batch(config).items()}
    bounds = [0, 201, 202, 203, 204]
    model = new_model(config)
    reference = cached_outputs(config, using(model, "xla"), row, bounds)
    result = cached_outputs(config, using(model, kernel, multiple), row, bounds)
    for got, want in zip(result, reference, strict=True):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, atol=4 * BF16_EPS * scale)


# ----------------------------------------------------------------------------------------------
# The cuDNN path's padding, through xla (any backend)
# ----------------------------------------------------------------------------------------------


# Frame-causal rows also carry the locality bias ([B, N, L, S], padded with the mask).
EVERY_MASK = [("bidirectional", ()), ("causal", (f"model.media_locality={SLOPES}",))]


@pytest.mark.parametrize("media_attention, overrides", EVERY_MASK)
def test_padding_keeps_loss_and_gradients_on_every_task(media_attention, overrides):
    compare_on_every_task(media_attention, "xla", MULTIPLE, *overrides)


def test_padding_keeps_cached_prefill_and_decoding():
    compare_through_the_cache("xla", MULTIPLE)


def test_padding_of_one_query_against_an_odd_cache():
    """L = 1 against S = 5 with grouped heads: the padded call equals the plain one."""
    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (2, 1, 4, 8), jnp.bfloat16)
    k, v = (jax.random.normal(key, (2, 5, 2, 8), jnp.bfloat16) for key in keys[1:])
    mask = jnp.arange(5)[None, None, :] <= jnp.array([2, 4])[:, None, None]  # [2, 1, 5]
    plain, padded = (jax.jit(functools.partial(attention.padded_attention, multiple=multiple,
                                                implementation="xla"))(q, k, v, mask, None)
                     for multiple in (1, 4))
    assert padded.shape == plain.shape == q.shape
    np.testing.assert_array_equal(np.asarray(padded, np.float32), np.asarray(plain, np.float32))


# ----------------------------------------------------------------------------------------------
# Which kernel runs
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(ON_GPU, reason="off-GPU behaviour")
def test_auto_is_xla_off_gpu():
    assert attention.kernel("auto", jnp.bfloat16, 64) == "xla"
    assert attention.kernel("xla", jnp.bfloat16, 64) == "xla"


@pytest.mark.skipif(ON_GPU, reason="off-GPU behaviour")
def test_cudnn_off_gpu_says_which_setting_to_change():
    config = configs.get("tiny", ["model.dtype=bfloat16", "model.attention=cudnn"])
    with nnx.use_eager_sharding(False):
        layer = attention.Attention(config.model, 0.02, nnx.Rngs(0))
    x = jnp.zeros((1, 3, config.model.d_model), jnp.bfloat16)
    with pytest.raises(ConfigError, match=r"model\.attention=cudnn cannot run here: .*GPU"):
        layer(x, jnp.zeros((1, 3, 3), jnp.int32), jnp.ones((1, 3, 3), bool))


# ----------------------------------------------------------------------------------------------
# cuDNN itself (NVIDIA GPU only)
# ----------------------------------------------------------------------------------------------


@gpu_only
def test_auto_takes_cudnn_where_it_applies():
    assert attention.kernel("auto", jnp.bfloat16, 64) == "cudnn"
    assert attention.kernel("auto", jnp.float32, 64) == "xla"
    assert attention.kernel("auto", jnp.bfloat16, 12) == "xla"
    with pytest.raises(ConfigError, match=r"model\.attention=cudnn .*float32"):
        attention.kernel("cudnn", jnp.float32, 64)


@gpu_only
@pytest.mark.parametrize("media_attention, overrides", EVERY_MASK)
def test_cudnn_matches_xla_on_every_task(media_attention, overrides):
    compare_on_every_task(media_attention, "cudnn", None, *overrides)


@gpu_only
def test_cudnn_matches_xla_through_the_cache():
    compare_through_the_cache("cudnn", None)
