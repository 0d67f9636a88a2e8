"""The unified decoder: block-causal attention seen through the model's outputs, multi-axis
rotary embeddings, the KV cache, rematerialization, and validation of the model's config sections.

Every model here is `tiny` in float32, so "unchanged" means bit-identical: a key the mask hides
gets exactly zero attention weight, and nothing else of the computation changes.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from o1 import checkpoint as checkpoint_lib
from o1 import configs, losses, sequence
from o1 import model as model_lib
from o1 import sharding as sh
from o1.batch import EXAMPLE_KEYS, MODEL_INPUTS, attention_mask, only_batch
from o1.config import TASKS, ConfigError
from o1.model import Model
from o1.nn import rotary
from o1.sequence import AUDIO, BOS_ID, EOS_ID, MEDIA_END_ID, TEXT, SequenceBuilder, random_example


def span(row, segment, block):
    """(start, end) of one block of one packed example in a [1, L] row."""
    at = np.flatnonzero((row["segment_ids"][0] == segment) & (row["block"][0] == block))
    assert len(at) and (np.diff(at) == 1).all()
    return int(at[0]), int(at[-1]) + 1


def copy_row(row):
    return {key: value.copy() for key, value in row.items()}


def with_model(config, **changes):
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **changes))


@pytest.fixture(scope="module")
def config():
    return configs.get("tiny", ["sequence.caption_dropout=0.0"])


@pytest.fixture(scope="module")
def builder(config):
    return SequenceBuilder(config)


@pytest.fixture(scope="module")
def model(config):
    with nnx.use_eager_sharding(False):  # one device, no mesh
        return Model(config, nnx.Rngs(0))


def make_forward(model):
    """row ([1, L] numpy arrays) -> (logits [L, V], velocity [L, F]) of `model` as numpy."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, inputs):
        out = nnx.merge(graphdef, state)(inputs)
        return out.logits, out.velocity

    def call(row):
        logits, velocity = run(state, {key: row[key] for key in MODEL_INPUTS})
        return np.asarray(logits[0]), np.asarray(velocity[0])

    return call


@pytest.fixture(scope="module")
def forward(model):
    return make_forward(model)


@pytest.fixture(scope="module")
def packed(config, builder):
    """One row of seq_len tokens: example 1 is text_to_av ([caption, <media>] [media]),
    example 2 video_to_caption ([<media>] [media] [</media>, caption]), then padding."""
    rng = np.random.default_rng(0)
    examples = [builder.build(random_example(config, 0), "text_to_av", rng),
                builder.build(random_example(config, 1), "video_to_caption", rng)]
    row = builder.pack(examples, config.seq_len)
    assert (row["segment_ids"] == 0).sum() > 0  # the row has padding
    return {key: value[None] for key, value in row.items()}


@pytest.fixture(scope="module")
def packed_outputs(forward, packed):
    return forward(packed)


def changes_everywhere(a, b, tol=1e-6):
    """Whether every position (row) of `a` differs from `b` by more than `tol` somewhere."""
    return bool((np.abs(a - b).max(-1) > tol).all())


def test_new_model_runs_without_a_mesh(config, model):
    """`new_model` is the one-device entry point (no mesh): it must not need one, and it builds
    the same weights as the model every other test here uses."""
    fresh = model_lib.new_model(config, seed=0)
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(fresh, nnx.Param)),
                                 nnx.to_flat_state(nnx.state(model, nnx.Param)), strict=True):
        np.testing.assert_array_equal(a[...], b[...], err_msg=str(path))


# ----------------------------------------------------------------------------------------------
# What each token sees, through the model's outputs
# ----------------------------------------------------------------------------------------------


def test_clean_prediction_derives_the_velocity_that_steps_onto_it(config, packed,
                                                                  packed_outputs):
    """predict="clean": the heads' output is x_0 and the velocity (x_t - x_0) / max(t, floor),
    so an Euler step from t to 0 lands on x_0; same weights as the velocity model."""
    clean_config = with_model(config, predict="clean", clean_min_noise=0.05)
    with nnx.use_eager_sharding(False):
        clean_model = Model(clean_config, nnx.Rngs(0))
    velocity = np.asarray(clean_model({k: packed[k] for k in MODEL_INPUTS}).velocity[0])
    x0 = packed_outputs[1]  # the same heads read as a velocity by the velocity model
    media, t = packed["media"][0], packed["noise"][0]
    is_media = packed["modality"][0] != TEXT
    assert (t[is_media] > 0).any() and (t[is_media] == 0).any()  # noised and clean context
    expected = (media - x0) / np.maximum(t, 0.05)[:, None]
    np.testing.assert_allclose(velocity[is_media], expected[is_media], rtol=1e-5, atol=1e-5)
    noised = is_media & (t >= 0.05)
    np.testing.assert_allclose((media - t[:, None] * velocity)[noised], x0[noised], atol=1e-5)
    assert (velocity[~is_media] == 0).all()


def test_text_never_sees_future_text(config, forward, packed, packed_outputs):
    logits, velocity = packed_outputs
    # The conditioning caption of example 1 and the caption after the media of example 2.
    for segment, block in ((1, 0), (2, 4)):
        start, end = span(packed, segment, block)
        j = start + 3
        other = copy_row(packed)
        other["tokens"][0, j] = (other["tokens"][0, j] + 7) % config.text.vocab_size
        logits2, velocity2 = forward(other)
        np.testing.assert_array_equal(logits2[:j], logits[:j])
        np.testing.assert_array_equal(velocity2[:j], velocity[:j])
        assert changes_everywhere(logits2[j:end], logits[j:end])  # the token and its future


def test_media_tokens_see_their_whole_segment(forward, packed, packed_outputs):
    logits, velocity = packed_outputs
    for segment, block in ((1, 1), (2, 3)):
        start, end = span(packed, segment, block)
        assert packed["modality"][0, end - 1] == AUDIO
        other = copy_row(packed)
        other["media"][0, end - 1] += 4.0  # the block's last audio latent
        logits2, velocity2 = forward(other)
        # It moves the velocity of the block's first video patch, and of every other token.
        assert np.abs(velocity2[start] - velocity[start]).max() > 1e-6
        assert changes_everywhere(velocity2[start:end], velocity[start:end])
        # Earlier segments do not see it.
        np.testing.assert_array_equal(logits2[:start], logits[:start])
        np.testing.assert_array_equal(velocity2[:start], velocity[:start])


def test_a_caption_after_the_media_sees_the_media(forward, packed, packed_outputs):
    logits, _ = packed_outputs
    media = span(packed, 2, 3)
    caption = span(packed, 2, 4)
    other = copy_row(packed)
    other["media"][0, (media[0] + media[1]) // 2] -= 4.0
    logits2, _ = forward(other)
    assert changes_everywhere(logits2[slice(*caption)], logits[slice(*caption)])
    np.testing.assert_array_equal(logits2[:media[0]], logits[:media[0]])  # <media> before it


def test_nothing_crosses_packed_examples(config, forward, packed, packed_outputs):
    logits, velocity = packed_outputs
    segment_ids = packed["segment_ids"][0]
    rng = np.random.default_rng(1)
    for changed, kept in ((2, 1), (1, 2)):
        where, keep = segment_ids == changed, segment_ids == kept
        n = int(where.sum())
        other = copy_row(packed)
        # Everything but the example's structure (segment ids, blocks, modalities).
        other["tokens"][0, where] = rng.integers(0, config.text.vocab_size, n)
        other["media"][0, where] = rng.normal(size=(n, config.media_dim))
        other["noise"][0, where] = np.where(other["noise"][0, where] > 0,
                                            rng.uniform(0.1, 1.0, n), 0.0)
        other["positions"][0, where] += 5
        logits2, velocity2 = forward(other)
        np.testing.assert_array_equal(logits2[keep], logits[keep])
        np.testing.assert_array_equal(velocity2[keep], velocity[keep])
        assert changes_everywhere(logits2[where], logits[where])


def test_padding_does_not_affect_real_tokens(config, forward, packed, packed_outputs):
    logits, velocity = packed_outputs
    pad = packed["segment_ids"][0] == 0
    n = int(pad.sum())
    rng = np.random.default_rng(2)
    other = copy_row(packed)
    other["tokens"][0, pad] = rng.integers(0, config.text.vocab_size, n)
    other["modality"][0, pad] = rng.integers(0, 3, n)
    other["media"][0, pad] = rng.normal(size=(n, config.media_dim))
    other["noise"][0, pad] = rng.uniform(0, 1, n)
    other["positions"][0, pad] = rng.integers(0, 500, (n, 3))
    logits2, velocity2 = forward(other)
    np.testing.assert_array_equal(logits2[~pad], logits[~pad])
    np.testing.assert_array_equal(velocity2[~pad], velocity[~pad])
    assert np.isfinite(logits2).all() and np.isfinite(velocity2).all()


def test_mask_is_the_same_in_jax_and_numpy_and_for_a_cached_chunk(config, builder):
    """The rule itself is checked against hand-written masks in test_sequence.py; here, on
    packed rows of every task, the jax arrays the model passes give the numpy mask, and a chunk
    of queries against every key (the KV-cache form) gives those rows of it."""
    rng = np.random.default_rng(3)
    built = [builder.build(random_example(config, i), task, rng) for i, task in enumerate(TASKS)]
    rows = [built[0:2], built[2:4], built[4:6], built[6:]]  # the last row: one example
    batch = builder.batch(rows, config.seq_len)
    seg, block, mod = batch["segment_ids"], batch["block"], batch["modality"]
    want = sequence.attention_mask(seg, block, mod)
    index = jnp.arange(config.seq_len)
    got = attention_mask(seg, block, mod, index, seg, block, index)
    np.testing.assert_array_equal(np.asarray(got), want)
    # The cached form: a chunk of queries against every key.
    chunk = slice(150, 250)
    got = attention_mask(seg[:, chunk], block[:, chunk], mod[:, chunk], index[chunk], seg,
                         block, index)
    np.testing.assert_array_equal(np.asarray(got), want[:, chunk])


# ----------------------------------------------------------------------------------------------
# Rotary embeddings
# ----------------------------------------------------------------------------------------------


SECTIONS = (4, 2, 2)  # tiny's head_dim 16: 8 rotation pairs over (time, row, column)


def test_rotary_is_a_rotation_by_position_times_frequency():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3, 16)).astype(np.float32)
    q = rng.integers(0, 1000, (2, 5))
    pos = np.stack([q, q, q], -1)  # text: all three axes together
    out = np.asarray(rotary.apply(jnp.asarray(x), jnp.asarray(pos), SECTIONS, 10_000.0))
    norm = np.linalg.norm
    np.testing.assert_allclose(norm(out, axis=-1), norm(x, axis=-1), rtol=1e-6)
    # Pair i (features i and i + 8) turns by position * frequency_i.
    freqs = rotary.frequencies(SECTIONS, 10_000.0)
    np.testing.assert_allclose(freqs, [1.0, 10_000 ** -0.25, 10_000 ** -0.5, 10_000 ** -0.75,
                                       1.0, 10_000 ** -0.5, 1.0, 10_000 ** -0.5], rtol=1e-6)
    unit = np.zeros((1, 1, 1, 16), np.float32)
    unit[..., 1] = 1.0
    turned = np.asarray(rotary.apply(jnp.asarray(unit), jnp.full((1, 1, 3), 7), SECTIONS,
                                     10_000.0))[0, 0, 0]
    angle = 7 * freqs[1]
    np.testing.assert_allclose(turned[[1, 9]], [np.cos(angle), np.sin(angle)], atol=1e-6)
    assert np.abs(np.delete(turned, [1, 9])).max() == 0
    # Position 0 is the identity.
    zero = rotary.apply(jnp.asarray(x), jnp.zeros((2, 5, 3), jnp.int32), SECTIONS, 10_000.0)
    np.testing.assert_array_equal(np.asarray(zero), x)


@pytest.mark.parametrize("shift", [(37, 37, 37), (11, -3, 20)])
def test_attention_scores_depend_only_on_relative_positions(shift):
    rng = np.random.default_rng(1)
    q = rng.normal(size=(1, 6, 2, 16)).astype(np.float32)
    k = rng.normal(size=(1, 6, 2, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)  # unit vectors: scores in [-1, 1]
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    if shift[0] == shift[1] == shift[2]:
        t = rng.integers(0, 60, (1, 6))
        pq = np.stack([t, t, t], -1)
        t = rng.integers(0, 60, (1, 6))
        pk = np.stack([t, t, t], -1)
    else:
        pq, pk = rng.integers(0, 60, (1, 6, 3)), rng.integers(0, 60, (1, 6, 3))

    def scores(pq, pk):
        rq = rotary.apply(jnp.asarray(q), jnp.asarray(pq), SECTIONS, 10_000.0)
        rk = rotary.apply(jnp.asarray(k), jnp.asarray(pk), SECTIONS, 10_000.0)
        return np.asarray(jnp.einsum("blnh,bsnh->bnls", rq, rk))

    before = scores(pq, pk)
    after = scores(pq + np.array(shift), pk + np.array(shift))
    np.testing.assert_allclose(after, before, atol=1e-6)
    # ... and do depend on them.
    moved = scores(pq + np.array(shift), pk)
    assert np.abs(moved - before).max() > 0.1


# ----------------------------------------------------------------------------------------------
# KV cache
# ----------------------------------------------------------------------------------------------


def make_cached_forward(model):
    """(row [1, L], chunk boundaries) -> (logits [L, V], velocity [L, F]) of `model`, fed chunk
    by chunk through a KV cache of the row's length."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def step(state, inputs, cache, index):
        out = nnx.merge(graphdef, state)(inputs, cache=cache, index=index)
        return out.logits, out.velocity, out.cache

    def call(row, bounds):
        cache = model.init_cache(1, row["tokens"].shape[1])
        logits, velocity = [], []
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            chunk = {key: row[key][:, start:end] for key in MODEL_INPUTS}
            lg, vel, cache = step(state, chunk, cache, jnp.int32(start))
            logits.append(np.asarray(lg[0]))
            velocity.append(np.asarray(vel[0]))
        return np.concatenate(logits), np.concatenate(velocity)

    return call


@pytest.fixture(scope="module")
def cached_forward(model):
    return make_cached_forward(model)


def text_segment(config, ids, block, start):
    """A text segment of `ids` with block id `block` whose positions start at `start`."""
    n = len(ids)
    q = np.arange(start, start + n, dtype=np.int32)
    return {
        "tokens": np.asarray(ids, np.int32), "modality": np.full(n, TEXT, np.int32),
        "block": np.full(n, block, np.int32), "positions": np.stack([q, q, q], -1),
        "media": np.zeros((n, config.media_dim), np.float32), "noise": np.zeros(n, np.float32),
        "targets": np.append(ids[1:], 0).astype(np.int32),
        "text_loss": np.ones(n, np.float32), "media_loss": np.zeros(n, np.float32),
        "task": np.zeros(n, np.int32),
    }


def row_of(builder, config, example):
    return {key: value[None] for key, value in builder.pack([example], config.seq_len).items()}


def test_kv_cache_decodes_text_like_the_full_pass(config, builder, forward, cached_forward):
    ids = np.random.default_rng(4).integers(6, config.text.vocab_size, 12)
    ids[0], ids[-1] = BOS_ID, EOS_ID
    row = row_of(builder, config, text_segment(config, ids, 0, 0))
    full_logits, _ = forward(row)
    logits, _ = cached_forward(row, [0, 7, *range(8, 13)])  # a prefix, then token by token
    np.testing.assert_allclose(logits, full_logits[:12], rtol=1e-6, atol=1e-6)


def caption_after_media(config, builder):
    """[caption, <media>] [media] [</media>, caption] as one row, its length n, and chunk
    bounds: the prefix as one chunk, the media block as one chunk (it is bidirectional
    inside), then the caption one token at a time."""
    example = random_example(config, 5)
    first = builder.build(example, "text_to_av", np.random.default_rng(5))
    media_start = int(np.flatnonzero(first["modality"] != TEXT)[0])
    end = len(first["tokens"])
    tail = text_segment(config, [MEDIA_END_ID, *example["text_ids"]], 2,
                        int(first["positions"][:, 0].max()) + 1)
    row = row_of(builder, config, {key: np.concatenate([first[key], tail[key]])
                                   for key in EXAMPLE_KEYS})
    n = end + len(tail["tokens"])
    return row, n, [0, media_start, end, *range(end + 1, n + 1)]


def test_kv_cache_continues_after_a_media_block(config, builder, forward, cached_forward):
    row, n, bounds = caption_after_media(config, builder)
    full_logits, full_velocity = forward(row)
    logits, velocity = cached_forward(row, bounds)
    np.testing.assert_allclose(logits, full_logits[:n], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(velocity, full_velocity[:n], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# adaLN noise conditioning
# ----------------------------------------------------------------------------------------------


def adaln_model(config, scale=0.0):
    """tiny with adaLN noise conditioning, its modulation weights drawn from N(0, scale^2)
    (0: as initialized)."""
    with nnx.use_eager_sharding(False):
        model = Model(with_model(config, noise_conditioning="adaln"), nnx.Rngs(0))
    if scale:
        rng = np.random.default_rng(7)
        for weight in [model.adaln, model.adaln_final, model.blocks.adaln_offset]:
            weight[...] = jnp.asarray(scale * rng.standard_normal(weight.shape), jnp.float32)
    return model


def test_adaln_starts_as_the_input_conditioned_model(config, packed, packed_outputs):
    """Zero-initialized modulation: the same function as model.noise_conditioning=input, and
    every other weight is drawn as without adaLN."""
    logits, velocity = make_forward(adaln_model(config))(packed)
    np.testing.assert_allclose(logits, packed_outputs[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(velocity, packed_outputs[1], rtol=1e-6, atol=1e-6)


def test_adaln_modulates_media_tokens_and_never_text(config, packed, packed_outputs):
    logits, velocity = make_forward(adaln_model(config, scale=0.1))(packed)
    caption = slice(*span(packed, 1, 0))  # example 1's caption: text before any media
    np.testing.assert_allclose(logits[caption], packed_outputs[0][caption], rtol=1e-6,
                               atol=1e-6)
    media = packed["modality"][0] != TEXT
    assert changes_everywhere(velocity[media], packed_outputs[1][media], tol=1e-5)


def test_adaln_kv_cache_continues_after_a_media_block(config, builder):
    model = adaln_model(config, scale=0.1)
    row, n, bounds = caption_after_media(config, builder)
    full_logits, full_velocity = make_forward(model)(row)
    logits, velocity = make_cached_forward(model)(row, bounds)
    np.testing.assert_allclose(logits, full_logits[:n], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(velocity, full_velocity[:n], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Locality bias (ALiBi over space and time on media tokens)
# ----------------------------------------------------------------------------------------------

SLOPES = (1.0, 0.5, 0.25, 0.0)  # tiny has 4 query heads


def local_model(config):
    with nnx.use_eager_sharding(False):
        return Model(with_model(config, media_locality=SLOPES), nnx.Rngs(0))


def test_locality_bias_penalizes_distance_between_media_tokens_only(config, packed):
    args = [jnp.asarray(packed[key]) for key in ("modality", "positions")]
    bias = np.asarray(model_lib.locality_bias(SLOPES, config.latent_ratio, *args, *args))[0]
    modality, positions = packed["modality"][0], packed["positions"][0]
    text = np.flatnonzero(modality == TEXT)
    assert (bias[:, text] == 0).all() and (bias[:, :, text] == 0).all()
    assert (bias[-1] == 0).all()  # a slope-0 head is unchanged
    # within example 1's media segment: -slope x (frames + rows + columns apart)
    lo, hi = span(packed, 1, 1)
    q, k = lo, hi - 1
    delta = np.abs(positions[q] - positions[k])
    distance = delta[0] / config.latent_ratio + delta[1] + delta[2]
    assert distance > 0
    np.testing.assert_allclose(bias[:, q, k], [-s * distance for s in SLOPES], rtol=1e-6)


def test_locality_changes_media_and_not_the_caption_before_them(config, packed,
                                                                 packed_outputs):
    """A caption before the media never attends to it, so its logits are unchanged; media
    velocities change."""
    logits, velocity = make_forward(local_model(config))(packed)
    caption = slice(*span(packed, 1, 0))
    np.testing.assert_allclose(logits[caption], packed_outputs[0][caption], rtol=1e-6,
                               atol=1e-6)
    media = packed["modality"][0] != TEXT
    assert changes_everywhere(velocity[media], packed_outputs[1][media], tol=1e-5)


def test_locality_kv_cache_continues_after_a_media_block(config, builder):
    model = local_model(config)
    row, n, bounds = caption_after_media(config, builder)
    full_logits, full_velocity = make_forward(model)(row)
    logits, velocity = make_cached_forward(model)(row, bounds)
    np.testing.assert_allclose(logits, full_logits[:n], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(velocity, full_velocity[:n], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Rematerialization
# ----------------------------------------------------------------------------------------------


def graphdef_with(config, **model_changes):
    """The graph of a Model built from `config` with `model_changes` (no parameters made)."""
    changed = with_model(config, **model_changes)
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: Model(changed, nnx.Rngs(0)))
    graphdef, _, rest = nnx.split(abstract, nnx.Param, ...)
    return graphdef, rest


@pytest.mark.parametrize("conditioning", ["input", "adaln"])
def test_remat_gives_the_same_loss_and_gradients(config, builder, model, conditioning):
    if conditioning == "adaln":
        model = adaln_model(config, scale=0.1)
    rng = np.random.default_rng(6)
    examples = [builder.build(random_example(config, 0), "text_to_av", rng),
                builder.build(random_example(config, 1), "video_to_caption", rng)]
    batch = {key: jnp.asarray(value)
             for key, value in builder.batch([examples], config.seq_len).items()}
    denom = losses.denominators(batch)
    assert (denom > 1).all()  # text, video and audio losses all apply
    params = nnx.state(model, nnx.Param)
    results = {}
    for remat in ("none", "full", "dots"):
        graphdef, rest = graphdef_with(config, remat=remat, noise_conditioning=conditioning)

        def loss_of(params, graphdef=graphdef, rest=rest):
            model = nnx.merge(graphdef, params, rest)
            return losses.loss_fn(config, model, batch, jax.random.key(0), denom)[0]

        results[remat] = jax.jit(jax.value_and_grad(loss_of))(params)
    loss, grads = results["none"]
    for remat in ("full", "dots"):
        other_loss, other_grads = results[remat]
        np.testing.assert_allclose(other_loss, loss, rtol=1e-6)
        for g, h in zip(jax.tree.leaves(grads), jax.tree.leaves(other_grads), strict=True):
            np.testing.assert_allclose(h, g, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Blocks under one scan
# ----------------------------------------------------------------------------------------------


def loss_and_grads(config, params, batch, **model_changes):
    """Jitted (loss, gradients) at `params` of a Model of `config` with `model_changes`."""
    graphdef, rest = graphdef_with(config, **model_changes)
    denom = losses.denominators(batch)

    def loss_of(params):
        model = nnx.merge(graphdef, params, rest)
        return losses.loss_fn(config, model, batch, jax.random.key(0), denom)[0]

    return jax.jit(jax.value_and_grad(loss_of))(params)


@pytest.mark.parametrize("conditioning", ["input", "adaln"])
def test_scanned_blocks_compute_what_the_loop_computes(config, builder, model, packed,
                                                       conditioning):
    """Outputs, loss and gradients of every remat policy; under adaLN with the locality bias
    too, so the per-layer offsets and everything shared by the layers go through the scan."""
    changes = {}
    if conditioning == "adaln":
        model = adaln_model(config, scale=0.1)
        changes = {"noise_conditioning": "adaln", "media_locality": SLOPES}
    params = nnx.state(model, nnx.Param)
    loop, scan = (nnx.merge(graphdef_with(config, scan_layers=s, **changes)[0], params)
                  for s in (False, True))
    for a, b in zip(make_forward(loop)(packed), make_forward(scan)(packed), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)

    rng = np.random.default_rng(6)
    examples = [builder.build(random_example(config, 0), "text_to_av", rng),
                builder.build(random_example(config, 1), "video_to_caption", rng)]
    batch = {key: jnp.asarray(value)
             for key, value in builder.batch([examples], config.seq_len).items()}
    # The loop's remat policies agree (test_remat_gives_the_same_loss_and_gradients): the
    # plain loop is the reference for each of them.
    loss, grads = loss_and_grads(config, params, batch, **changes)
    for remat in ("none", "full", "dots"):
        scan_loss, scan_grads = loss_and_grads(config, params, batch, remat=remat,
                                               scan_layers=True, **changes)
        np.testing.assert_allclose(scan_loss, loss, rtol=1e-6)
        assert jax.tree.structure(scan_grads) == jax.tree.structure(grads)
        for (path, g), (_, h) in zip(nnx.to_flat_state(grads), nnx.to_flat_state(scan_grads),
                                     strict=True):
            np.testing.assert_allclose(h[...], g[...], rtol=1e-6, atol=1e-9,
                                       err_msg=f"{remat} {path}")


def test_a_checkpoint_of_the_loop_restores_into_the_scanned_model(config, builder, tmp_path):
    """Scanning changes how the blocks run, not the parameters: two train steps taken with
    the loop are saved as the training loop saves them and served by a scanned model."""
    import orbax.checkpoint as ocp

    from o1 import checkpoint
    from o1.train import loop, trainer

    with nnx.use_eager_sharding(False):
        graphdef, params = nnx.split(Model(config, nnx.Rngs(0)))
    tx = trainer.make_optimizer(config.train)
    state = loop.initial_state(params, tx, config.train.seed)
    step = jax.jit(trainer.make_train_step(config, graphdef, tx))
    rng = np.random.default_rng(8)
    rows = [[builder.build(random_example(config, 2 * r + e), TASKS[2 * r + e], rng)
             for e in range(2)] for r in range(2)]
    batch = {key: jnp.asarray(value)
             for key, value in only_batch(builder.batch(rows, config.seq_len)).items()}
    for _ in range(2):
        state, metrics = step(state, batch)
    assert np.isfinite(metrics["loss"])
    with checkpoint.manager(tmp_path) as m:
        m.save(2, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))

    scanned = with_model(config, scan_layers=True)
    with nnx.use_eager_sharding(False):
        scan_graphdef, scan_params = nnx.split(nnx.eval_shape(
            lambda: Model(scanned, nnx.Rngs(0))))
    restored, at = checkpoint.restore(tmp_path, {"params": checkpoint.abstract(scan_params)})
    assert at == 2
    assert jax.tree.structure(restored["params"]) == jax.tree.structure(state["params"])
    row = {key: np.asarray(value[:1]) for key, value in batch.items()}
    trained = make_forward(nnx.merge(graphdef, state["params"]))(row)
    served = make_forward(nnx.merge(scan_graphdef, restored["params"]))(row)
    for a, b in zip(trained, served, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_the_blocks_are_one_stack_of_the_blocks_drawn_one_by_one(config):
    """Every block parameter has a leading layer axis (logical axis LAYERS), and layer i
    holds what the i-th of separately built blocks, drawn from the same generator after the
    model's input weights, holds: stacking changes the layout, not the initialization."""
    model = model_lib.new_model(config, seed=0)
    layers = config.model.num_layers
    with nnx.use_eager_sharding(False):
        rngs = nnx.Rngs(0)
        for _ in range(6):  # embed, video_in, audio_in, modality_embed, noise_in, noise_out
            rngs.params()
        separate = [model_lib.Block(config.model, rngs) for _ in range(layers)]
    stacked = nnx.to_flat_state(nnx.state(model.blocks, nnx.Param))
    for path, weight in stacked:
        assert weight.shape[0] == layers, path
        assert weight.get_metadata()["out_sharding"][0] == sh.LAYERS, path
    for i, block in enumerate(separate):
        for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(block, nnx.Param)), stacked,
                                     strict=True):
            np.testing.assert_array_equal(a[...], b[...][i], err_msg=f"layer {i} {path}")


def per_layer(tree):
    """`tree` with its stacked block parameters split into one subtree per layer, as
    checkpoints of earlier versions hold them: nested dicts keyed by the saved names."""
    out = {}
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = checkpoint_lib._names(path)
        parts = [(names, x)]
        if "blocks" in names:
            at = names.index("blocks") + 1
            parts = [(names[:at] + (str(i),) + names[at:], x[i]) for i in range(x.shape[0])]
        for name, value in parts:
            node = out
            for key in name[:-1]:
                node = node.setdefault(key, {})
            node[name[-1]] = value
    return out


def test_a_checkpoint_with_one_subtree_per_block_is_read_stacked(config, tmp_path):
    """A run saved with its blocks one per layer still serves and resumes: parameters and
    optimizer moments are read into the stacked layout, equal to what was saved."""
    import orbax.checkpoint as ocp

    from o1.train import loop, trainer

    graphdef, params = nnx.split(model_lib.new_model(config))
    params = jax.tree.map(lambda x: x + 0.5, params)  # not the fresh model's values
    tx = trainer.make_optimizer(config.train)
    state = loop.initial_state(params, tx, config.train.seed)
    state["opt"] = jax.tree.map(lambda x: x + 1 if x.dtype == jnp.float32 else x, state["opt"])
    with checkpoint_lib.manager(tmp_path) as m:
        m.save(5, args=ocp.args.Composite(state=ocp.args.StandardSave(per_layer(state))))

    restored, step = checkpoint_lib.restore(tmp_path, {"params": checkpoint_lib.abstract(params)})
    assert step == 5
    resumed, _ = checkpoint_lib.restore(tmp_path, checkpoint_lib.abstract(state))
    for got, want in [(restored["params"], params), (resumed, state)]:
        assert jax.tree.structure(got) == jax.tree.structure(want)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert a.shape == b.shape
            if not jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key):
                np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------
# Config validation of the model's sections
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (["model.num_kv_heads=3"],
     r"model.num_heads \(4\) must be a multiple of model.num_kv_heads \(3\); "
     r"try model.num_kv_heads in \[1, 2, 4\]"),
    (["model.rope_sections=[3,3,3]"],
     r"model.rope_sections must be 3 non-negative counts of frequency pairs summing to "
     r"head_dim / 2 = 8, got \(3, 3, 3\)"),
    (["model.rope_sections=[4,4]"], r"model.rope_sections must be 3 .* got \(4, 4\)"),
    (["model.rope_sections=[9,-1,0]"], r"model.rope_sections must be 3 non-negative"),
    (["model.head_dim=15"], "head_dim must be even"),
    (["model.remat=some"], "model.remat must be none, full or dots"),
    (["model.predict=noise"], "model.predict must be velocity or clean, got 'noise'"),
    (["model.clean_min_noise=0"], r"model.clean_min_noise must be in \(0, 1\]"),
    (["model.noise_conditioning=film"],
     "model.noise_conditioning must be input or adaln, got 'film'"),
    (["model.media_locality=[1,1]"],
     r"model.media_locality must be empty or 4 slopes >= 0 \(one per query head, "
     r"model.num_heads\), got \(1.0, 1.0\)"),
    (["model.media_locality=[1,1,1,-1]"], "model.media_locality must be empty or 4 slopes"),
    (["sequence.step_noise=1.5"], r"sequence.step_noise must be in \[0, 1\], got 1.5"),
    (["train.optimizer=sgd"], "train.optimizer must be adamw or muon, got 'sgd'"),
    (["sequence.video_patch=3"],
     r"latent grid 8x8 must be divisible by sequence.video_patch \(3\); "
     r"try sequence.video_patch in \[1, 2, 4, 8\]"),
    (["sequence.seq_len=300"],
     r"sequence.seq_len \(300\) cannot hold 2 examples of up to 203 tokens; "
     r"set sequence.seq_len=406"),
    (["train.batch_size=4", "train.grad_accum=3"],
     r"train.batch_size \(4\) must be a multiple of train.grad_accum \(3\); "
     r"try train.batch_size=6"),
])
def test_bad_model_settings_say_what_to_change(overrides, message):
    with pytest.raises(ConfigError, match=message):
        configs.get("tiny", overrides)


def test_valid_model_settings_pass():
    config = configs.get("tiny", ["model.num_kv_heads=1", "model.rope_sections=[4,2,2]",
                                  "sequence.seq_len=406", "train.grad_accum=2"])
    assert config.model.rotary_sections == (4, 2, 2)
    assert configs.get("tiny").model.rotary_sections == SECTIONS
