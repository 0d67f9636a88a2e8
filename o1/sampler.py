"""Sampling from the unified model: flow ODE for media, autoregressive decoding for text.

Axes: B rows, R requests, P prefix positions (padded to a bucket), M media tokens of a clip,
F media features, V vocabulary, G generated text tokens.

Media (docs/design.md, "Sampling"). A request is a text prefix ([caption.., <media>], or just
[<media>]) and a media segment of which some tokens are given (clean context, noise level 0)
and the rest are generated: they start as Gaussian noise at t = 1 and follow the model's
velocity v = e - x_0 down to t = 0 with Euler or Heun steps on a (shifted) uniform grid.
Classifier-free guidance runs the conditional prefix and the unconditional one ([<media>]:
the caption dropped, as in training) as two rows of one batch and mixes their velocities
per modality, v = v_u + s (v_c - v_u), with s = `cfg_video` on video tokens and `cfg_audio`
on audio tokens. The prefix never attends to the media (it is causal and comes first), so its
keys and values are computed once into a KV cache and every denoising step runs only the M
media tokens against it. Prefixes are right-padded to a length bucket, so prompts of
different lengths share one compiled program; the padding has segment id 0 and no real
token sees it.

Text. `decode_text` continues rows of a prefix (e.g. [<media>] media [</media>, bos] for
captioning) token by token with a KV cache: greedy, or temperature with top-p, or a beam
search that keeps `beams` partial captions a row; it stops when every row has emitted eos or
after `max_tokens`.

Both are deterministic for a given key. `cached=False` recomputes the whole row at every
step instead of using the cache: the reference the cached paths are tested against.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o1.batch import MODEL_INPUTS
from o1.config import Config, SampleConfig
from o1.model import Model
from o1.sequence import (
    AUDIO,
    BOS_ID,
    EOS_ID,
    MEDIA_END_ID,
    MEDIA_START_ID,
    PAD_ID,
    TEXT,
    VIDEO,
    SequenceBuilder,
    join_segments,
)

# Ids a generated caption never contains.
_BANNED_IDS = (PAD_ID, BOS_ID, MEDIA_START_ID, MEDIA_END_ID)
_DEFAULTS = SampleConfig()


# Checks the type and range of options built directly (FlowOptions(steps=...)); what one
# request may cost is checked against a workdir's own `sample` section (`within`).
_UNLIMITED = SampleConfig(max_steps=SampleConfig.MAX_SEED, max_guidance=1e300,
                          max_beams=SampleConfig.MAX_SEED)


class RequestError(ValueError):
    """A request that cannot be served: a sampling option out of range here, a bad prompt,
    length, file or workdir in `o1.serve`. The message names the value and what would work;
    the CLI prints it as one line and the studio shows it.

    Args:
      message: the rest of a sentence that starts with the field's name ("must be ..., got
        ..."), or, with `sentence`, a whole sentence (one that names a file, say).
      field: the option or input the message is about (e.g. "steps", "prompt", "video"),
        which each front end names its own way (`--steps` in the CLI, the label on the page
        in the studio).
      sentence: `message` is whole; a front end may put the field's name before it.
    """

    def __init__(self, message: str, field: str | None = None, *, sentence: bool = False):
        super().__init__(message)
        self.field, self.message, self.sentence = field, message, sentence or field is None

    def named(self, name: Callable[[str], str] = str) -> str:
        """The message, its field named by `name(field)` where the sentence starts with it."""
        return self.message if self.sentence else f"{name(self.field)} {self.message}"

    def __str__(self) -> str:
        return self.named()


def check(name: str, value, sample: SampleConfig = _DEFAULTS) -> None:
    """RequestError unless `value` is a valid sampling option `name` (e.g. "seed") within the
    limits of `sample`: the checks of `SampleConfig.problem`, which the config's `sample`
    section runs too."""
    problem = sample.problem(name, value)
    if problem:
        raise RequestError(problem, name)


def seed_of(sample: SampleConfig, seed: int | None) -> int:
    """`seed`, or `sample.seed` when None; RequestError when it is out of range."""
    seed = sample.seed if seed is None else seed
    check("seed", seed)
    return int(seed)


def within(sample: SampleConfig, options: FlowOptions | TextOptions) -> None:
    """RequestError unless every field of `options` is within the limits of `sample`."""
    for field in dataclasses.fields(options):
        check(field.name, getattr(options, field.name), sample)


class _Options:
    """What FlowOptions and TextOptions share: each field is checked and brought to the type
    of its SampleConfig default (a web form sends 12.0 for 12), and `of` builds them from a
    config's `sample` section, within its limits."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            check(field.name, value, _UNLIMITED)
            object.__setattr__(self, field.name, type(getattr(_DEFAULTS, field.name))(value))

    @classmethod
    def of(cls, sample: SampleConfig, **given):
        """The options of `sample`, with each value of `given` that is not None instead."""
        values = {f.name: getattr(sample, f.name) for f in dataclasses.fields(cls)}
        values.update({k: v for k, v in given.items() if v is not None})
        for name, value in values.items():
            check(name, value, sample)
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class FlowOptions(_Options):
    """How media is sampled: steps, solver, grid shift and guidance scales (SampleConfig's
    fields of those names say what each does)."""

    steps: int = _DEFAULTS.steps
    solver: str = _DEFAULTS.solver
    shift: float = _DEFAULTS.shift
    cfg_video: float = _DEFAULTS.cfg_video
    cfg_audio: float = _DEFAULTS.cfg_audio
    past_noise: float = _DEFAULTS.past_noise

    @property
    def guided(self) -> bool:
        return self.cfg_video != 1.0 or self.cfg_audio != 1.0

    def grid(self) -> np.ndarray:
        """float32 [steps + 1]: noise levels from 1 down to 0."""
        t = np.linspace(1.0, 0.0, self.steps + 1)
        return (self.shift * t / (1.0 + (self.shift - 1.0) * t)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TextOptions(_Options):
    """How text is decoded: at most `max_tokens` ids (eos included), greedy at temperature 0,
    else sampled from the nucleus of mass `top_p`."""

    max_tokens: int = _DEFAULTS.max_tokens
    temperature: float = _DEFAULTS.temperature
    top_p: float = _DEFAULTS.top_p
    beams: int = _DEFAULTS.beams

    def __post_init__(self):
        super().__post_init__()
        problem = SampleConfig.decoding_problem(self.beams, self.temperature)
        if problem:
            raise RequestError(problem, "beams")


@dataclasses.dataclass(frozen=True)
class MediaRequest:
    """One clip to sample.

    Attributes:
      caption: caption ids (bos .. eos) to condition on, or None.
      video: float32 [t, h, w, C] normalized latents; only the context tokens are read.
      audio: float32 [a, Ca], likewise.
      noised: bool [M]: the media tokens to generate (`SequenceBuilder.noised_mask`).
    """

    caption: np.ndarray | None
    video: np.ndarray
    audio: np.ndarray
    noised: np.ndarray


def buckets(config: Config) -> tuple[int, ...]:
    """Prefix lengths programs are compiled for: powers of two from 8 up to the longest
    prefix, [caption of max_text_len, <media>]."""
    longest = config.sequence.max_text_len + 1
    out = [8]
    while out[-1] < longest:
        out.append(out[-1] * 2)
    return tuple(out)


class Sampler:
    """Samples media and text from a model.

    Args:
      config: the model's config.
      model: the trained model (its parameters are read at construction).
      prefix_buckets: prefix lengths to compile for (default: `buckets(config)`); a server
        passes only the longest, so one warm-up compiles what every prompt needs.
      text_vocab: ids the text tokenizer has (default: all the model's); decoded text never
        holds an id past them. A tokenizer trained on few captions can have fewer pieces than
        `text.vocab_size` asked for, while the model keeps that many outputs.
    """

    def __init__(self, config: Config, model: Model,
                 prefix_buckets: Sequence[int] | None = None, text_vocab: int | None = None):
        self.config = config
        self.text_vocab = text_vocab
        self.builder = SequenceBuilder(config)
        self.graphdef, self.params = nnx.split(model)
        self.buckets = tuple(sorted(prefix_buckets or buckets(config)))
        if self.buckets[-1] < config.sequence.max_text_len + 1:
            raise ValueError(f"prefix_buckets {self.buckets} must reach "
                             f"{config.sequence.max_text_len + 1} (a caption of max_text_len "
                             "and <media>)")
        self._denoise = jax.jit(self._denoise_fn,
                                static_argnames=("solver", "guided", "cached"))
        self._commit = jax.jit(self._commit_fn, static_argnames=("cached",))
        self._prefill = jax.jit(self._prefill_fn)
        self._decode = jax.jit(self._decode_fn, static_argnames=("options", "cached"))
        self._read = jax.jit(self._read_fn)

    # ------------------------------------------------------------------------------------------
    # Rows
    # ------------------------------------------------------------------------------------------

    def _prefix_rows(self, captions: Sequence[np.ndarray | None]) -> tuple[dict, np.ndarray]:
        """Right-padded prefixes [B, P] and each row's media offset [B] (its real length)."""
        ids = [np.array([MEDIA_START_ID], np.int32) if c is None else
               np.concatenate([np.asarray(c, np.int32), [MEDIA_START_ID]]) for c in captions]
        longest = max(len(i) for i in ids)
        if longest - 1 > self.config.sequence.max_text_len:
            raise ValueError(f"a caption of {longest - 1} ids is longer than "
                             f"sequence.max_text_len={self.config.sequence.max_text_len}")
        p = next(b for b in self.buckets if b >= longest)
        prefixes = []
        for i in ids:
            segment = self.builder.text_segment(i, 0)
            segment["task"] = np.zeros(len(i), np.int32)
            prefixes.append([segment])
        rows = self.builder.batch(prefixes, p)  # padding: segment id 0, block PAD_BLOCK
        out = {k: rows[k] for k in MODEL_INPUTS}
        return out, np.array([len(i) for i in ids], np.int32)

    def _media_rows(self, requests: Sequence[MediaRequest], offsets: np.ndarray) -> dict:
        """Media segments [B, M] (clean features; noise levels filled in per step)."""
        parts = []
        for req, offset in zip(requests, offsets, strict=True):
            seg = self.builder.media_segment(req.video, req.audio, req.noised, 1.0, int(offset))
            seg["media"] = np.where(req.noised[:, None], 0.0, seg["media"])
            parts.append(seg)
        out = {k: np.stack([p[k] for p in parts]) for k in
               ("tokens", "modality", "positions", "media", "block")}
        out["segment_ids"] = np.ones_like(out["tokens"])
        out["block"] += 1  # after the prefix's block 0
        return out

    # ------------------------------------------------------------------------------------------
    # Media: the flow ODE
    # ------------------------------------------------------------------------------------------

    def sample_media(self, requests: Sequence[MediaRequest], options: FlowOptions,
                     key: jax.Array, cached: bool = True,
                     on_step: Callable[[str, int], None] | None = None) -> np.ndarray:
        """Samples the noised tokens of every request.

        Args:
          requests: the clips to sample (all of this config's clip geometry).
          options: steps, solver, shift and guidance.
          key: the initial noise (request r uses fold_in(key, r), so a request's sample does
            not depend on what else is in the batch).
          cached: keep the prefix's (and, frame-causal, the finished steps') keys and values
            in a KV cache (True), or run the whole row at every step (the reference).
          on_step: called with ("prefix", 0) after the prefix and ("step", i) once step i's
            result is ready (for progress and profiling): denoising step i of the clip, or,
            frame-causal, latent time step i with all its denoising steps (one compiled loop,
            so a short step pays one dispatch); `denoising_passes` counts these calls.

        Returns:
          float32 [R, M, F] media features in layout order: the context as given and the
          sampled tokens (unpack with `SequenceBuilder.unpack_media`).
        """
        *_, (_, media) = self.iter_media(requests, options, key, cached, on_step)
        return media

    def iter_media(self, requests: Sequence[MediaRequest], options: FlowOptions,
                   key: jax.Array, cached: bool = True,
                   on_step: Callable[[str, int], None] | None = None
                   ) -> Iterator[tuple[int, np.ndarray]]:
        """`sample_media` handing out each latent time step as soon as it is finished.

        Frame-causal (`sequence.media_attention="causal"`), latent step i is denoised from
        t = 1 to 0 while the prefix and the finished steps 0 .. i-1 sit in the KV cache as
        clean context; then its clean tokens join the cache. Bidirectional, every step is
        denoised at once. Arguments as in `sample_media`.

        Yields:
          (i, float32 [R, M, F]): the last latent step now finished (t - 1 when all are) and
          the media so far: steps 0 .. i final, later steps not yet sampled.
        """
        r = len(requests)
        b = self.builder
        steps = b.latent_step  # [M]
        guided = options.guided and any(q.caption is not None for q in requests)
        captions = [q.caption for q in requests] + ([None] * r if guided else [])
        prefix, offsets = self._prefix_rows(captions)
        media = self._media_rows(list(requests) * (2 if guided else 1), offsets)
        noised = np.stack([q.noised for q in requests])
        clean = media["media"][:r]
        width = np.where(media["modality"][:r] == VIDEO, self.config.video_token_dim,
                         np.where(media["modality"][:r] == AUDIO, self.config.audio.channels, 0))
        features = np.arange(self.config.media_dim) < width[..., None]  # [R, M, F]
        noise = np.stack([jax.random.normal(jax.random.fold_in(key, i), clean.shape[1:])
                          for i in range(r)])
        x_all = np.where(noised[..., None] & features, noise, clean).astype(np.float32)
        scales = np.where(media["modality"][:r] == VIDEO, options.cfg_video,
                          np.where(media["modality"][:r] == AUDIO, options.cfg_audio, 1.0))
        p = prefix["tokens"].shape[1]
        prefix = {k: jnp.asarray(v) for k, v in prefix.items()}
        if cached:
            context = self._prefill(self.params, prefix)
        else:  # whole rows: the prefix, then the media segment as it is written
            context = {k: jnp.concatenate([prefix[k], jnp.asarray(
                media[k] if k != "noise" else np.zeros(media["tokens"].shape, np.float32))],
                axis=1) for k in MODEL_INPUTS}
        if on_step:
            jax.block_until_ready(context)
            on_step("prefix", 0)
        grid = options.grid()
        spans = (_causal_spans(b, noised) if b.causal
                 else [(0, self.config.num_media_tokens)])
        # frame-causal: each latent step's whole grid in one call; else one call a step
        stages = ([grid] if b.causal else
                  [grid[i:i + 2] for i in range(options.steps)])
        for start, end in spans:
            part = slice(start, end)
            first, last = int(steps[start]), int(steps[end - 1])
            rows = {k: jnp.asarray(media[k][:, part]) for k in
                    ("tokens", "modality", "segment_ids", "block", "positions")}
            consts = {"noised": jnp.asarray(noised[:, part]),
                      "features": jnp.asarray(features[:, part]),
                      "scales": jnp.asarray(scales[:, part], jnp.float32)}
            x = jnp.asarray(x_all[:, part])
            index = p + start
            # Given steps (a continuation's past) have nothing to denoise: they only join
            # the cache, all in one call.
            for i, levels in enumerate(stages if noised[:, part].any() else []):
                x = self._denoise(self.params, context, rows, consts, x, jnp.asarray(levels),
                                  index, solver=options.solver, guided=guided, cached=cached)
                if on_step:
                    jax.block_until_ready(x)
                    on_step("step", last if b.causal else i)
            x_all[:, part] = np.asarray(x)
            if b.causal and end < self.config.num_media_tokens:
                past = jnp.asarray(options.past_noise, jnp.float32)
                context = self._commit(self.params, context, rows, consts, x, past,
                                       jax.random.fold_in(key, 1_000_000 + last), index,
                                       cached=cached)
            done = x_all.copy()
            for step in range(first, last + 1):
                yield step, done

    def _prefill_fn(self, params, prefix: dict) -> dict:
        """The KV cache of the prefix rows, sized for prefix + media."""
        model = nnx.merge(self.graphdef, params)
        b, p = prefix["tokens"].shape
        cache = model.init_cache(b, p + self.config.num_media_tokens)
        return model(prefix, cache=cache, index=0).cache

    def _inputs(self, rows, consts, x, t):
        """Model inputs of the tokens being denoised: `x` [R, n, F] at noise level t where
        noised (0 on given context), every row of the guided batch alike."""
        copies = rows["tokens"].shape[0] // x.shape[0]
        noised = jnp.tile(consts["noised"], (copies, 1))
        return {**rows, "media": jnp.tile(x, (copies, 1, 1)),
                "noise": jnp.where(noised, t, 0.0).astype(jnp.float32)}

    def _velocity(self, params, context, rows, consts, x, t, index, guided, cached):
        """Guided velocity [R, n, F] of the tokens at `index` .. (x [R, n, F], noise level t)."""
        model = nnx.merge(self.graphdef, params)
        inputs = self._inputs(rows, consts, x, t)
        if cached:
            v = model({k: inputs[k] for k in MODEL_INPUTS}, cache=context, index=index).velocity
        else:
            full = _written(context, inputs, index)
            v = jax.lax.dynamic_slice_in_dim(model(full).velocity, index, x.shape[1], axis=1)
        if guided:
            cond, uncond = jnp.split(v, 2)
            v = uncond + consts["scales"][..., None] * (cond - uncond)
        # Only noised tokens move: the given context stays exactly as given at every step.
        return jnp.where(consts["noised"][..., None] & consts["features"], v, 0.0)

    def _denoise_fn(self, params, context, rows, consts, x, levels, index, *, solver,
                    guided, cached):
        """x [R, n, F] moved along the noise levels [k + 1] (k solver steps)."""
        velocity = functools.partial(self._velocity, params, context, rows, consts,
                                     index=index, guided=guided, cached=cached)

        def step(i, x):
            t, t_next = levels[i], levels[i + 1]
            v = velocity(x, t)
            euler = x + (t_next - t) * v
            if solver == "euler":
                return euler
            # Heun: average the slopes at both ends; its second slope at t = 0 is not taken.
            return jax.lax.cond(t_next == 0, lambda: euler, lambda: x + (t_next - t) * 0.5 * (
                v + velocity(euler, t_next)))

        return jax.lax.fori_loop(0, levels.shape[0] - 1, step, x)

    def _commit_fn(self, params, context, rows, consts, x, level, key, index, *, cached):
        """`context` with a finished latent step (x [R, n, F]) in it as context: its
        generated tokens re-noised to `level` (0: clean), the given ones as given."""
        eps = jax.random.normal(key, x.shape, jnp.float32)
        x = jnp.where(consts["noised"][..., None] & consts["features"],
                      (1 - level) * x + level * eps, x)
        inputs = self._inputs(rows, consts, x, level)
        inputs = {k: inputs[k] for k in MODEL_INPUTS}
        if not cached:
            return _written(context, inputs, index)
        model = nnx.merge(self.graphdef, params)
        return model(inputs, cache=context, index=index).cache

    # ------------------------------------------------------------------------------------------
    # Text: autoregressive decoding
    # ------------------------------------------------------------------------------------------

    def caption_prefix(self, video: np.ndarray, audio: np.ndarray, tag: int | None = None
                       ) -> dict:
        """The captioning prefix of one clip, [<media>] [media: clean] [</media>, bos] (then
        the language tag id `tag`, with a tokenizer of several languages), as arrays [n, ...]
        with `block`."""
        b = self.builder
        parts = [b.text_segment(np.array([MEDIA_START_ID], np.int32), 0)]
        parts.append(b.media_segment(video, audio, b.noised_mask("video_to_caption"), 0.0, 1))
        start = int(parts[-1]["positions"][:, 0].max()) + 1
        opening = [MEDIA_END_ID, BOS_ID] + ([] if tag is None else [tag])
        parts.append(b.text_segment(np.array(opening, np.int32), start))
        out = join_segments(parts)
        return {k: out[k] for k in ("tokens", "modality", "block", "positions", "media", "noise")}

    def decode_text(self, prefixes: Sequence[dict], options: TextOptions, key: jax.Array,
                    cached: bool = True) -> np.ndarray:
        """Continues each prefix (arrays [n, ...] of equal n, e.g. `caption_prefix`) with
        text in its last block.

        Returns:
          int32 [B, G] generated ids (G = options.max_tokens), eos included, PAD_ID after.
        """
        rows = {k: jnp.asarray(np.stack([p[k] for p in prefixes])) for k in prefixes[0]}
        rows["segment_ids"] = jnp.ones_like(rows["tokens"])
        return np.asarray(self._decode(self.params, rows, key, options=options, cached=cached))

    def read_text(self, prefix: dict, ids: np.ndarray) -> np.ndarray:
        """The model's next-id log-probabilities along text `ids` [L] that continue `prefix`
        (arrays [n, ...], e.g. `caption_prefix`), read in one uncached pass (teacher forcing):
        row j is the distribution of ids[j] given the prefix and ids[:j]. Returns float32
        [L, V] (V the text tokenizer's ids, or the model's)."""
        ids = np.asarray(ids, np.int32)
        longest = self.config.sequence.max_text_len
        if not 0 < len(ids) <= longest:
            raise ValueError(f"read_text takes 1 to {longest} ids, got {len(ids)}")
        # Padded to one length, so one compiled program reads every caption.
        padded = np.full((longest,), PAD_ID, np.int32)
        padded[:len(ids)] = ids
        rows = {k: jnp.asarray(v)[None] for k, v in prefix.items()}
        rows["segment_ids"] = jnp.ones_like(rows["tokens"])
        logp = self._read(self.params, rows, jnp.asarray(padded)[None])
        return np.asarray(logp[0, :len(ids)])

    def _read_fn(self, params, prefix, ids):
        model = nnx.merge(self.graphdef, params)
        n = prefix["tokens"].shape[1]
        after = text_inputs(ids, prefix["positions"][:, -1, 0] + 1, prefix["block"][:, -1:],
                            prefix["media"].shape[-1])
        rows = {k: jnp.concatenate([prefix[k], after[k].astype(prefix[k].dtype)], 1)
                for k in prefix}
        logits = model(rows).logits[:, n - 1:-1].astype(jnp.float32)
        if self.text_vocab is not None:
            logits = logits[..., :self.text_vocab]
        return jax.nn.log_softmax(logits, -1)

    def _decode_fn(self, params, prefix, key, *, options: TextOptions, cached: bool):
        model = nnx.merge(self.graphdef, params)
        if options.beams > 1:
            return self._beam_search(model, prefix, options)
        b, n = prefix["tokens"].shape
        g = options.max_tokens
        total = n + g
        last_pos = prefix["positions"][:, -1, 0]  # [B]
        block = prefix["block"][:, -1:]

        def pick(logits, step_key):  # [B, V] -> [B]
            logits = self._allowed(logits)
            if options.temperature == 0:
                return jnp.argmax(logits, -1).astype(jnp.int32)
            logits = logits / options.temperature
            if options.top_p < 1:
                order = jnp.argsort(-logits, axis=-1)
                sorted_logits = jnp.take_along_axis(logits, order, -1)
                probs = jax.nn.softmax(sorted_logits, -1)
                # Keep an id while the mass before it is below top_p (the first always).
                keep = (jnp.cumsum(probs, -1) - probs) < options.top_p
                cut = jnp.where(keep, sorted_logits, -jnp.inf)
                logits = jnp.full_like(logits, -jnp.inf).at[
                    jnp.arange(b)[:, None], order].set(cut)
            return jax.random.categorical(step_key, logits).astype(jnp.int32)

        def token_inputs(tokens, i):  # tokens [B, L] at generated indices i .. i + L - 1
            return text_inputs(tokens, last_pos + 1 + i, block, prefix["media"].shape[-1])

        out = jnp.full((b, g), PAD_ID, jnp.int32)
        done = jnp.zeros((b,), bool)
        if cached:
            cache = model.init_cache(b, total)
            first = model(prefix, cache=cache, index=0)
            state = (0, first.logits[:, -1], first.cache, out, done)
        else:
            # The whole row, generated ids filled in as they come; causal text never sees
            # the positions not yet written.
            blank = token_inputs(jnp.zeros((b, g), jnp.int32), 0)
            full = {k: jnp.concatenate([prefix[k], blank[k]], axis=1) for k in prefix}
            logits = model(full).logits[:, n - 1]
            state = (0, logits, full, out, done)

        def cond(state):
            i, _, _, _, done = state
            return (i < g) & ~jnp.all(done)

        def body(state):
            i, logits, ctx, out, done = state
            token = pick(logits, jax.random.fold_in(key, i))
            token = jnp.where(done, PAD_ID, token)
            out = out.at[:, i].set(token)
            done = done | (token == EOS_ID)
            step_in = token_inputs(token[:, None], i)
            if cached:
                res = model(step_in, cache=ctx, index=n + i)
                return i + 1, res.logits[:, -1], res.cache, out, done
            ctx = {k: jax.lax.dynamic_update_slice_in_dim(ctx[k], step_in[k], n + i, axis=1)
                   for k in ctx}
            logits = jax.lax.dynamic_index_in_dim(model(ctx).logits, n + i, 1, keepdims=False)
            return i + 1, logits, ctx, out, done

        return jax.lax.while_loop(cond, body, state)[3]

    def _allowed(self, logits: jax.Array) -> jax.Array:
        """`logits` [B, V] with the ids text never holds at -inf."""
        logits = logits.at[:, jnp.array(_BANNED_IDS)].set(-jnp.inf)
        if self.text_vocab is not None:
            logits = logits.at[:, self.text_vocab:].set(-jnp.inf)
        return logits

    def _beam_search(self, model: Model, prefix: dict, options: TextOptions) -> jax.Array:
        """The most likely continuation of each prefix found keeping `options.beams` partial
        captions a row: at each id, the `beams` most likely of every kept caption's
        continuations. A finished caption keeps its log-probability; the one returned is the
        finished one (or, when none has finished in `max_tokens` ids, the cut one) with the
        highest log-probability per id. Always with the KV cache. Returns int32 [B, G] like
        the greedy decoder."""
        b, n = prefix["tokens"].shape
        k, g = options.beams, options.max_tokens
        first = model(prefix, cache=model.init_cache(b, n + g), index=0)
        # Each row's prefix is read once; its K partial captions share it from there.
        copies = functools.partial(jnp.repeat, repeats=k, axis=0)  # [B, ...] -> [B*K, ...]
        last_pos = copies(prefix["positions"][:, -1, 0])
        block = copies(prefix["block"][:, -1:])
        # Only the first of a row's K copies is alive at the start, so the first step's K
        # best continuations are K different ids rather than one id K times.
        score = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (k - 1), jnp.float32), b)
        state = (0, copies(first.logits[:, -1]), jax.tree.map(copies, first.cache),
                 jnp.full((b * k, g), PAD_ID, jnp.int32), jnp.zeros((b * k,), bool), score)

        def cond(state):
            return (state[0] < g) & ~jnp.all(state[4])

        def body(state):
            i, logits, cache, out, done, score = state
            logp = jax.nn.log_softmax(self._allowed(logits.astype(jnp.float32)), -1)
            v = logp.shape[-1]
            ended = jnp.full((v,), -jnp.inf, jnp.float32).at[PAD_ID].set(0.0)
            logp = jnp.where(done[:, None], ended, logp)  # a finished caption only pads
            best, index = jax.lax.top_k((score[:, None] + logp).reshape(b, k * v), k)
            parent = (index // v + jnp.arange(b)[:, None] * k).reshape(-1)
            token = (index % v).reshape(-1).astype(jnp.int32)
            cache = jax.tree.map(lambda x: x[parent], cache)
            out = out[parent].at[:, i].set(token)
            done = done[parent] | (token == EOS_ID)
            step_in = text_inputs(token[:, None], last_pos + 1 + i, block,
                                  prefix["media"].shape[-1])
            res = model(step_in, cache=cache, index=n + i)
            return i + 1, res.logits[:, -1], res.cache, out, done, best.reshape(-1)

        _, _, _, out, done, score = jax.lax.while_loop(cond, body, state)
        length = jnp.sum(out != PAD_ID, -1)  # ids written, eos included; a finished one pads
        per_id = (score / jnp.maximum(length, 1)).reshape(b, k)
        # A caption cut at max_tokens is returned only when none of its row's has ended.
        done = done.reshape(b, k)
        per_id = jnp.where(done | ~done.any(-1, keepdims=True), per_id, -jnp.inf)
        chosen = jnp.argmax(per_id, -1) + jnp.arange(b) * k
        return out[chosen]


def text_inputs(tokens: jax.Array, first: jax.Array, block: jax.Array, media_dim: int) -> dict:
    """Model inputs of text ids `tokens` [B, L] that continue a prefix: at positions `first`
    [B] onwards, in the prefix's last block `block` [B, 1]."""
    b, length = tokens.shape
    pos = first[:, None] + jnp.arange(length)
    return {"tokens": tokens, "modality": jnp.full((b, length), TEXT, jnp.int32),
            "segment_ids": jnp.ones((b, length), jnp.int32),
            "block": jnp.broadcast_to(block, (b, length)),
            "positions": jnp.stack([pos] * 3, -1),
            "media": jnp.zeros((b, length, media_dim), jnp.float32),
            "noise": jnp.zeros((b, length), jnp.float32)}


def denoising_passes(config: Config, options: FlowOptions, context_steps: int = 0) -> int:
    """How many ("step", i) progress calls `Sampler.sample_media` makes for one clip of
    `config`: one per denoising step, or, frame-causal, one per latent time step it
    generates (a continuation's `context_steps` given steps are not denoised)."""
    if config.sequence.causal:
        return config.num_video_latents - context_steps
    return options.steps


def _causal_spans(builder: SequenceBuilder, noised: np.ndarray) -> list[tuple[int, int]]:
    """Token spans of a frame-causal media segment in sampling order: each latent step with
    a token to generate on its own, and runs of given steps (nothing to generate in any
    row of `noised` [R, M]) together."""
    spans: list[tuple[int, int]] = []
    for i in range(builder.t):
        start, end = builder.step_span(i)
        given = not noised[:, start:end].any()
        if spans and given and not noised[:, spans[-1][0]:spans[-1][1]].any():
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def _written(rows: dict, inputs: dict, index) -> dict:
    """Whole rows [B, P + M, ...] with `inputs` [B, n, ...] written at position `index`."""
    return {k: jax.lax.dynamic_update_slice_in_dim(rows[k], inputs[k].astype(rows[k].dtype),
                                                   index, axis=1) for k in rows}
