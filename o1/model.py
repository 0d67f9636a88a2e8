"""The unified decoder: one transformer over interleaved text, video and audio tokens.

Axes: B batch, L positions (queries), S key positions, D model width, V vocabulary,
F media features (a video patch or an audio latent, zero-padded to one width), E noise
embedding features.

Every position is a text token, a video patch or an audio latent (`modality`). Its input is
the sum of a text embedding (text) or a linear patch projection (media), a modality embedding
and, for media, an embedding of its noise level. The outputs are LM logits for every position
and a velocity for every media position, through one head per modality (the heads predict the
clean latent and the velocity is derived from it, or predict the velocity itself:
`ModelConfig.predict`). Attention is block-causal from segment ids: see `o1.batch.attention_mask`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx import spmd

from o1 import sharding as sh
from o1.batch import AUDIO, TEXT, VIDEO, ModelInputs, attention_mask
from o1.config import Config, ModelConfig
from o1.nn.attention import Attention, empty_cache
from o1.nn.mlp import SwiGLU
from o1.nn.norm import RMSNorm
from o1.nn.param import dense

NOISE_FEATURES = 256  # sinusoidal features of the noise level before its MLP
MODULATIONS = 6  # adaLN's per-block shift, scale and gate of attention, then of the MLP
# what the inference cache keeps of every position besides keys and values
_STRUCTURE = ("segment_ids", "block", "modality", "positions")


class Output(NamedTuple):
    logits: jax.Array  # float32 [B, L, V]
    velocity: jax.Array  # float32 [B, L, F]; video features on video tokens, audio on audio
    cache: dict | None  # the updated inference cache, or None


def locality_bias(slopes, time_unit, q_modality, q_positions, k_modality, k_positions):
    """float32 [B, N, L, S]: -slope_n x distance between media tokens, 0 wherever the query
    or the key is text.

    The distance is |time| / `time_unit` + |row| + |column| on the rotary positions (time in
    video latent frames), so a head with slope s starts out looking at the tokens around a
    query, in space and time, rather than at the whole clip. Media tokens of different
    examples or segments never see each other (`o1.batch.attention_mask`), so only pairs inside one
    clip's media segment count.
    """
    media = (q_modality[:, :, None] != TEXT) & (k_modality[:, None, :] != TEXT)
    delta = jnp.abs(q_positions[:, :, None, :] - k_positions[:, None, :, :]).astype(jnp.float32)
    distance = delta[..., 0] / time_unit + delta[..., 1] + delta[..., 2]
    slopes = jnp.asarray(slopes, jnp.float32)[None, :, None, None]
    return jnp.where(media[:, None], -slopes * distance[:, None], 0.0)


def noise_features(t: jax.Array) -> jax.Array:
    """[..., E] sinusoidal features of noise levels t in [0, 1]."""
    half = NOISE_FEATURES // 2
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half, dtype=jnp.float32) / half)
    angle = (t.astype(jnp.float32) * 1000.0)[..., None] * freqs
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


class Block(nnx.Module):
    """Pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x)).

    Under adaLN noise conditioning, media tokens read their norms' outputs scaled and shifted
    and their branches gated: x + (1 + g) attn(norm(x) (1 + s) + b), likewise for the MLP."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        out_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
        dtype = jnp.dtype(cfg.dtype)
        self.attn_norm = RMSNorm(cfg.d_model, sh.EMBED, cfg.norm_eps)
        self.attn = Attention(cfg, out_std, rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, sh.EMBED, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.mlp_dim, cfg.init_std, out_std, dtype, rngs)
        if cfg.noise_conditioning == "adaln":
            # this block's offset to the shared modulation (b, s, g of attention, then MLP)
            # (zeros drawn without the model's rngs, so every other weight is as without adaLN)
            self.adaln_offset = nnx.Param(nnx.with_partitioning(
                nnx.initializers.zeros, (None, sh.EMBED))(
                    jax.random.key(0), (MODULATIONS, cfg.d_model), jnp.float32))

    def __call__(self, x_bld, positions_bl3, mask_bls, cache=None, index=0,
                 modulation=None, media_bl=None, bias_bnls=None):
        """`bias_bnls` float [B, N, L, S] is added to the attention logits (or None).
        `modulation` float [B, L, 6, D] (adaLN's shared modulation, 0 on text) and
        `media_bl` bool [B, L] (media tokens, the ones that take this block's offset), or
        None for input-only noise conditioning."""
        mod = None
        if modulation is not None:  # shift, scale, gate of attention, then of the MLP
            offset = self.adaln_offset[...].astype(modulation.dtype)
            mod = modulation + jnp.where(media_bl[..., None, None], offset, 0).astype(
                modulation.dtype)

        def modulated(x, i):  # norm output (1 + scale) + shift
            return x if mod is None else x * (1 + mod[:, :, i + 1]) + mod[:, :, i]

        def gated(h, i):  # branch output (1 + gate)
            return h if mod is None else h * (1 + mod[:, :, i + 2])

        h, cache = self.attn(modulated(self.attn_norm(x_bld), 0), positions_bl3, mask_bls,
                             cache, index, bias_bnls)
        x_bld = sh.shard(x_bld + gated(h, 0), sh.BATCH, sh.LENGTH, sh.ACT_EMBED)
        h = self.mlp(modulated(self.mlp_norm(x_bld), 3))
        return sh.shard(x_bld + gated(h, 3), sh.BATCH, sh.LENGTH, sh.ACT_EMBED), cache


_REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole block in the backward pass
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
_LAYER_AXIS = {nnx.PARTITION_NAME: sh.LAYERS}


def stacked_blocks(cfg: ModelConfig, rngs: nnx.Rngs) -> Block:
    """The model's `cfg.num_layers` decoder blocks as one `Block` whose parameters are stacked
    on a leading layer axis ([num_layers, ...], logical axis `LAYERS`).

    The layers are drawn from `rngs` one after another, as separate blocks would be; stacked,
    the train step handles one array per weight whatever the depth (one gradient, one
    optimizer update), and the blocks run as one scan."""
    layers = [Block(cfg, rngs) for _ in range(cfg.num_layers)]
    graphdef, _ = nnx.split(layers[0])
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *[nnx.state(b) for b in layers])
    return nnx.merge(graphdef, spmd.add_axis(stacked, 0, _LAYER_AXIS))


class Model(nnx.Module):
    """The unified decoder of docs/design.md ("Model")."""

    def __init__(self, config: Config, rngs: nnx.Rngs):
        m = config.model
        d, std = m.d_model, m.init_std
        self.cfg = m
        self.video_dim = config.video_token_dim
        self.audio_dim = config.audio.channels
        self.media_dim = config.media_dim
        self.dtype = jnp.dtype(m.dtype)
        self.time_unit = config.latent_ratio  # rotary time units per video latent frame
        self.embed = dense(rngs, (config.text.vocab_size, d), (sh.VOCAB, sh.EMBED), 1.0)
        self.video_in = dense(rngs, (self.video_dim, d), (sh.MEDIA, sh.EMBED),
                              1 / math.sqrt(self.video_dim))
        self.audio_in = dense(rngs, (self.audio_dim, d), (sh.MEDIA, sh.EMBED),
                              1 / math.sqrt(self.audio_dim))
        self.modality_embed = dense(rngs, (3, d), (None, sh.EMBED), std)
        self.noise_in = dense(rngs, (NOISE_FEATURES, d), (None, sh.EMBED), std)
        self.noise_out = dense(rngs, (d, d), (None, sh.EMBED), std)
        self.blocks = stacked_blocks(m, rngs)
        self.final_norm = RMSNorm(d, sh.EMBED, m.norm_eps)
        self.lm_head = dense(rngs, (d, config.text.vocab_size), (sh.EMBED, sh.VOCAB), std)
        self.video_out = dense(rngs, (d, self.video_dim), (sh.EMBED, sh.MEDIA), std)
        self.audio_out = dense(rngs, (d, self.audio_dim), (sh.EMBED, sh.MEDIA), std)
        if m.noise_conditioning == "adaln":
            # zero-initialized, so training starts from the input-conditioned function
            self.adaln = dense(rngs, (d, MODULATIONS * d), (sh.EMBED, None), 0.0)
            self.adaln_final = dense(rngs, (d, 2 * d), (sh.EMBED, None), 0.0)

    def noise_embedding(self, inputs: dict[str, jax.Array]) -> jax.Array:
        """[B, L, D] embedding of every token's noise level (used on media tokens only)."""
        dt = self.dtype
        noise = jax.nn.silu(jnp.einsum("ble,ed->bld", noise_features(inputs["noise"]).astype(dt),
                                       self.noise_in[...].astype(dt)))
        return jnp.einsum("bld,de->ble", noise, self.noise_out[...].astype(dt))

    def embed_inputs(self, inputs: dict[str, jax.Array], noise_bld: jax.Array) -> jax.Array:
        """[B, L, D] input vectors of text ids and (noised) media features, with the noise
        embedding `noise_bld` added to media tokens."""
        dt = self.dtype
        modality = inputs["modality"]
        media = inputs["media"].astype(dt)
        # Gathered before the lookup: a lookup into the (vocab, embed)-sharded table would
        # come out split along embed and need a full rematerialization to split by rows.
        table = sh.shard(self.embed[...], None, None)
        text = jnp.take(table, inputs["tokens"], axis=0).astype(dt)
        video = jnp.einsum("blf,fd->bld", media[..., :self.video_dim],
                           self.video_in[...].astype(dt))
        audio = jnp.einsum("blf,fd->bld", media[..., :self.audio_dim],
                           self.audio_in[...].astype(dt))
        mod = modality[..., None]
        x = jnp.where(mod == TEXT, text, jnp.where(mod == VIDEO, video, audio))
        x = x + jnp.where(mod == TEXT, 0, noise_bld).astype(dt)
        x = x + jnp.take(self.modality_embed[...], modality, axis=0).astype(dt)
        return sh.shard(x, sh.BATCH, sh.LENGTH, sh.ACT_EMBED)

    def modulation(self, noise_bld: jax.Array, media_bl: jax.Array, weight: nnx.Param,
                   count: int) -> jax.Array:
        """[B, L, count, D] adaLN modulation of the noise embedding by `weight`, 0 on text."""
        dt = self.dtype
        mod = jnp.einsum("bld,de->ble", jax.nn.silu(noise_bld), weight[...].astype(dt))
        mod = jnp.where(media_bl[..., None], mod, 0).astype(dt)
        mod = mod.reshape(*mod.shape[:2], count, -1)
        return sh.shard(mod, sh.BATCH, sh.LENGTH, None, sh.ACT_EMBED)

    def heads(self, x_bld: jax.Array, inputs: dict[str, jax.Array],
              noise_bld: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """LM logits [B, L, V] and media velocity [B, L, F] (float32) of final hidden states
        (`noise_bld`, the noise embedding, modulates the final norm under adaLN).

        With `predict="clean"` the media heads give the clean latent x_0 and the velocity is
        (x_t - x_0) / t, t floored at `clean_min_noise`: an Euler step from t to 0 lands on
        the predicted x_0."""
        dt = self.dtype
        x = self.final_norm(x_bld)
        if self.cfg.noise_conditioning == "adaln":
            shift, scale = jnp.moveaxis(self.modulation(
                noise_bld, inputs["modality"] != TEXT, self.adaln_final, 2), 2, 0)
            x = x * (1 + scale) + shift
        logits = jnp.einsum("bld,dv->blv", x, self.lm_head[...].astype(dt)).astype(jnp.float32)
        logits = sh.shard(logits, sh.BATCH, sh.LENGTH, sh.VOCAB)
        video = jnp.einsum("bld,df->blf", x, self.video_out[...].astype(dt)).astype(jnp.float32)
        audio = jnp.einsum("bld,df->blf", x, self.audio_out[...].astype(dt)).astype(jnp.float32)
        if self.cfg.predict == "clean":
            noise = inputs["noise"].astype(jnp.float32)
            t = jnp.maximum(noise, self.cfg.clean_min_noise)[..., None]
            x_t = inputs["media"].astype(jnp.float32)
            video = (x_t[..., :self.video_dim] - video) / t
            audio = (x_t[..., :self.audio_dim] - audio) / t
        pad = [(0, 0), (0, 0)]
        video = jnp.pad(video, pad + [(0, self.media_dim - self.video_dim)])
        audio = jnp.pad(audio, pad + [(0, self.media_dim - self.audio_dim)])
        mod = inputs["modality"][..., None]
        velocity = jnp.where(mod == VIDEO, video, jnp.where(mod == AUDIO, audio, 0.0))
        return logits, velocity

    def __call__(self, inputs: ModelInputs, cache: dict | None = None,
                 index: jax.Array | int = 0) -> Output:
        """Runs the decoder over a batch of token rows.

        Args:
          inputs: `tokens` int [B, L], `modality` int [B, L], `segment_ids` int [B, L],
            `block` int [B, L], `positions` int [B, L, 3], `media` float [B, L, F] (noised
            latents), `noise` float [B, L] (noise level of each media token).
          cache: from `init_cache`: keys, values and segment structure of earlier positions;
            the L new positions are written at `index` and attend to everything cached.
          index: absolute position of the first new token (with a cache).

        Returns:
          Output(logits [B, L, V], velocity [B, L, F], the updated cache or None).
        """
        noise = self.noise_embedding(inputs)
        x = self.embed_inputs(inputs, noise)
        modulation = media = None
        if self.cfg.noise_conditioning == "adaln":
            media = inputs["modality"] != TEXT
            modulation = self.modulation(noise, media, self.adaln, MODULATIONS)
        length = x.shape[1]
        q_index = index + jnp.arange(length)
        keys = inputs
        if cache is not None:
            cache = dict(cache)
            for key in _STRUCTURE:
                start = (0, index) + (0,) * (cache[key].ndim - 2)
                cache[key] = jax.lax.dynamic_update_slice(
                    cache[key], inputs[key].astype(cache[key].dtype), start)
            keys = cache
        k_index = q_index if cache is None else jnp.arange(cache["segment_ids"].shape[1])
        mask = attention_mask(inputs["segment_ids"], inputs["block"], inputs["modality"],
                              q_index, keys["segment_ids"], keys["block"], k_index)
        bias = None
        if self.cfg.media_locality:
            bias = locality_bias(self.cfg.media_locality, self.time_unit, inputs["modality"],
                                 inputs["positions"], keys["modality"], keys["positions"])
        graphdef, stacked = nnx.split(self.blocks)
        run_block = self._block_fn(graphdef, cache, index, positions=inputs["positions"],
                                   mask=mask, modulation=modulation, media=media, bias=bias)
        if cache is None and self.cfg.scan_layers:
            x, _ = jax.lax.scan(lambda x, layer: (run_block(x, layer)[0], None), x, stacked)
        else:
            # Decoding steps are short and each layer updates its own cache entry in place: a
            # Python loop over layers, whatever `scan_layers` says.
            layers = []
            for i in range(self.cfg.num_layers):
                layer = jax.tree.map(lambda w, i=i: w[i], stacked)
                x, layer_cache = run_block(x, layer, None if cache is None
                                           else cache["layers"][i])
                layers.append(layer_cache)
            if cache is not None:
                cache["layers"] = layers
        logits, velocity = self.heads(x, inputs, noise)
        return Output(logits, velocity, cache)

    def _block_fn(self, graphdef, cache, index, **inputs):
        """(x [B, L, D], one layer's parameters sliced from the stack, its cache or None) ->
        (x after that block, its updated cache), rematerialized as `remat` says in full
        passes. Everything but the residual stream and the layer is closed over."""
        scanned = cache is None and self.cfg.scan_layers

        def run(x_bld, layer, layer_cache=None):
            layer = spmd.remove_axis(layer, 0, _LAYER_AXIS)
            block = nnx.merge(graphdef, layer)
            return block(x_bld, inputs["positions"], inputs["mask"], layer_cache, index,
                         modulation=inputs["modulation"], media_bl=inputs["media"],
                         bias_bnls=inputs["bias"])

        if cache is not None or self.cfg.remat == "none":
            return run
        # scan keeps the recomputation apart from the forward pass by itself: no CSE guard
        return jax.checkpoint(run, policy=_REMAT_POLICIES[self.cfg.remat],
                              prevent_cse=not scanned)

    def init_cache(self, batch: int, length: int) -> dict:
        """An empty inference cache for `length` positions: per-layer keys/values and the
        segment structure (segment ids, blocks, modalities, positions) the attention mask and
        the locality bias need."""
        zeros = jnp.zeros((batch, length), jnp.int32)
        return {"layers": [empty_cache(batch, length, self.cfg)
                           for _ in range(self.cfg.num_layers)],
                "segment_ids": zeros, "block": zeros, "modality": zeros,
                "positions": jnp.zeros((batch, length, 3), jnp.int32)}


def num_params(model: nnx.Module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def new_model(config: Config, seed: int = 0) -> Model:
    """The model on one device (no mesh): parameters annotated for sharding, not placed.
    For a mesh use `o1.sharding.create_model`."""
    with nnx.use_eager_sharding(False):
        return Model(config, nnx.Rngs(seed))
