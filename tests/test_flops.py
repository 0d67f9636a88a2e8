"""The FLOP counter behind MFU: a hand count for `tiny`, and XLA's own count of the forward pass.

Relationship with XLA's cost analysis: `jax.jit(...).lower(...).compile().cost_analysis()`
counts attention densely (every query against every key, whatever the mask) and also counts
elementwise work (norms, softmax, activations, rotary) that model-FLOPs conventions leave out.
On a row that is one media block every query sees every key, so o1.flops counts exactly the
same matmuls as XLA there; XLA's total is then a few percent higher, the elementwise work.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from o1 import configs, flops
from o1.model import Model
from o1.sequence import AUDIO, TEXT, VIDEO

# tiny: d_model 64, 2 layers, 4 query heads and 2 KV heads of 16, SwiGLU 128, vocabulary 64,
# video tokens of 2 x 2 patches x 4 channels = 16 features, audio latents of 4 channels.
PER_LAYER = (
    2 * 64 * 4 * 16  # q: 8192
    + 2 * (2 * 64 * 2 * 16)  # k and v: 8192
    + 2 * 4 * 16 * 64  # o: 8192
    + 3 * (2 * 64 * 128)  # gate, up, down: 49152
)  # 73728
INPUTS = 2 * 16 * 64 + 2 * 4 * 64 + 2 * 256 * 64 + 2 * 64 * 64  # video_in, audio_in, noise MLP
HEADS = 2 * 64 * (64 + 16 + 4)  # LM head, video and audio velocity heads: 10752
MATMUL_PER_TOKEN = INPUTS + 2 * PER_LAYER + HEADS  # 43520 + 147456 + 10752 = 201728
PER_PAIR = 2 * (2 * 4 * 16 + 2 * 4 * 16)  # 2 layers x (QK^T + PV): 512


def test_matmul_flops_per_token_by_hand():
    config = configs.get("tiny")
    assert MATMUL_PER_TOKEN == 201_728
    assert flops.matmul_flops_per_token(config) == MATMUL_PER_TOKEN
    assert flops.attention_flops_per_pair(config) == PER_PAIR == 512


def test_train_flops_of_a_hand_made_packed_batch():
    config = configs.get("tiny")
    T, V, A = TEXT, VIDEO, AUDIO
    # Row 0: example 1 = text (3) | media (4) | text (2); example 2 = text (2) | media (3);
    # then 2 padding tokens.
    # Visible (query, key) pairs: example 1: 1+2+3 (text) + 4 x (3 + 4) (media) + 8+9 (text)
    # = 51; example 2: 1+2 (text) + 3 x (2 + 3) (media) = 18. 69 pairs, 14 real tokens.
    # Row 1: one text example of 5 tokens (1+2+3+4+5 = 15 pairs), then 11 padding tokens.
    batch = {
        "segment_ids": np.array([[1] * 9 + [2] * 5 + [0] * 2, [1] * 5 + [0] * 11]),
        "block": np.array([[0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 4, -1, -1],
                           [0] * 5 + [-1] * 11]),
        "modality": np.array([[T, T, T, V, V, A, A, T, T, T, T, V, V, A, T, T], [T] * 16]),
    }
    # Forward: 19 tokens through every matmul, 84 visible pairs; training = 3 x forward.
    want = 3 * (201_728 * 19 + 512 * 84)
    assert want == 11_627_520
    assert flops.train_flops(config, batch) == want

    # Padding costs nothing: the same examples in longer rows count the same.
    longer = {key: np.concatenate([value, np.full((2, 16), -1 if key == "block" else 0)], 1)
              for key, value in batch.items()}
    assert flops.train_flops(config, longer) == want


@pytest.mark.parametrize("conditioning", ["input", "adaln"])
def test_forward_matmuls_agree_with_xla_cost_analysis(conditioning):
    config = configs.get("tiny", [f"model.noise_conditioning={conditioning}"])
    d = config.model.d_model
    # adaLN's projections: 6 D shared modulations and the final norm's 2 D, on every token
    per_token = MATMUL_PER_TOKEN + (2 * d * 8 * d if conditioning == "adaln" else 0)
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: Model(config, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)

    def forward(state, inputs):
        out = nnx.merge(graphdef, state)(inputs)
        return out.logits, out.velocity

    length = 32
    ints = jax.ShapeDtypeStruct((1, length), jnp.int32)
    inputs = {"tokens": ints, "modality": ints, "segment_ids": ints, "block": ints,
              "positions": jax.ShapeDtypeStruct((1, length, 3), jnp.int32),
              "media": jax.ShapeDtypeStruct((1, length, config.media_dim), jnp.float32),
              "noise": jax.ShapeDtypeStruct((1, length), jnp.float32)}
    cost = jax.jit(forward).lower(state, inputs).compile().cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]

    # One media block of 32 tokens: every query sees every key, as XLA assumes.
    row = {"segment_ids": np.ones((1, length), int), "block": np.zeros((1, length), int),
           "modality": np.full((1, length), VIDEO)}
    ours = flops.train_flops(config, row) / 3
    assert ours == per_token * length + PER_PAIR * length ** 2
    # XLA adds the elementwise work: a few percent at tiny's width (adaLN's scales, shifts
    # and gates on every block add about 2 more).
    assert ours <= xla <= (1.05 if conditioning == "input" else 1.08) * ours, (xla, ours)


def test_peak_flops_from_the_config_counts_every_device():
    config = configs.get("tiny")
    config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                   peak_flops=1e12))
    peak, source = flops.peak_flops(config)
    assert peak == 1e12 * len(jax.devices())
    assert source == "train.peak_flops"
