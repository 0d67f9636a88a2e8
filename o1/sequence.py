"""How cached clips become token sequences for every task.

See docs/design.md, "One sequence, many tasks".

Pure numpy: this runs in the grain data pipeline, one example at a time.

Axis letters:
  n  tokens of one built example (n <= config.max_example_len)
  L  tokens of a packed row (seq_len)
  B  rows of a batch
  M  tokens of a media segment (config.num_media_tokens)
  F  media features of a token (config.media_dim)
  t  video latent frames, (h, w) the latent grid, C video latent channels
  a  audio latents, Ca audio latent channels
  (R, W) the video token grid (h / p, w / p), p = sequence.video_patch

An example is a list of segments, each with its own `block` id (0, 1, 2, ...):

  text_to_av        [caption.., <media>] [media: all noised]
  video_to_caption  [<media>] [media: clean] [</media>, bos, caption.., eos]
  video_to_audio    [caption.., <media>] [media: audio noised]
  audio_to_video    [caption.., <media>] [media: video noised]
  image_to_video    [caption.., <media>] [media: all but video latent frame 0 noised]
  continuation      [caption.., <media>] [media: all but the first c latent time steps noised]
  unconditional     [<media>] [media: all noised]

A conditioning caption is dropped (the first block becomes [<media>]) with probability
`sequence.caption_dropout`, for classifier-free guidance.

A media segment interleaves the clip per latent time step, video first:

  [video latent 0: R x W patches, row-major][the audio latents starting in its span]
  [video latent 1][audio latents starting in its span] ...

Video latent 0 encodes frame 0 alone and later latents t_down frames each (the VAE is causal).
When the audio latent rate equals fps (tiny, quickstart: one audio latent per frame), that is
[video 0][audio 0] [video 1][audio 1 .. k] ... [video i][audio 1 + k (i - 1) .. k i].

Positions are (time, row, col) for multi-axis rotary embeddings. The time unit is one audio
latent. Inside a media segment at offset o, audio latent j has time o + j and every token of
video latent i has its start time in the same unit (o for i = 0, o + 1 + k (i - 1) after when
the audio latent rate equals fps), so sound and picture of the same instant share a coordinate.
(Exact when a video latent starts on an audio latent boundary, as in every named config;
otherwise its start is rounded down to one.) Video tokens take their patch
(row, col); audio tokens take (R, 0), a row outside the image. Text tokens advance all three axes
together, (q, q, q), starting one past the largest time of the previous segment (0 first); a media
segment's offset is one past the last position of the text before it.

Attention (`attention_mask`) is block-causal: a token sees the tokens of its example up to
itself, and a media token also sees the rest of its own block. Under
`sequence.media_attention="bidirectional"` a media segment is one block, so every media token
sees the whole clip. Under "causal" each latent time step of the segment is a block of its own
(its video patches and audio latents), so a media token sees its own step, every earlier step
and the text before, never a later step; the segments after it are numbered on from there.
"""

from __future__ import annotations

import bisect
from typing import Any, NamedTuple

import numpy as np

from o1 import batch as batch_lib
from o1.batch import AUDIO, EXAMPLE_KEYS, TEXT, VIDEO
from o1.config import TASKS, Config

# Special text ids; the text tokenizer (`o1.tokenizers.text`) reserves them in its vocabulary.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
MEDIA_START_ID, MEDIA_END_ID = 4, 5  # open and close a media segment
TASK_IDS = {name: i for i, name in enumerate(TASKS)}
# Tasks whose caption is a condition, and so is dropped for classifier-free guidance.
CAPTION_CONDITIONED = ("text_to_av", "video_to_audio", "audio_to_video", "image_to_video",
                       "continuation")
# Noised tokens get t >= MIN_NOISE: a noise level of exactly 0 would mark them as clean context.
MIN_NOISE = 1e-5
PAD_BLOCK = -1  # block id of padding; real blocks are >= 0


class Draw(NamedTuple):
    """The random choices that lay out one example (`SequenceBuilder.draw`)."""

    task: str  # a name in config.TASKS
    drop: bool  # the conditioning caption is dropped (classifier-free guidance)
    level: float | np.ndarray  # noise level of the noised media tokens (one, or one per token)
    noised: np.ndarray  # bool [M]: the media tokens generated (the rest are clean context)


def split_captions(ids: np.ndarray) -> list[np.ndarray]:
    """Captions written one after another (each bos .. eos, as `every_text_ids`), apart."""
    return np.split(ids, np.flatnonzero(ids == BOS_ID)[1:])


class SequenceBuilder:
    """Builds, packs and batches training sequences from cached examples.

    Args:
      config: the run's config; uses its clip geometry and `config.sequence`.
    """

    def __init__(self, config: Config):
        self.config = config
        seq = config.sequence
        self.t = config.num_video_latents
        self.a = config.num_audio_latents
        self.latent_shape = (*config.latent_grid, config.video_vae.channels)
        self.rows, self.cols = config.token_grid
        self.p = seq.video_patch
        self.media_dim = config.media_dim
        self.causal = seq.causal
        self._layout()
        weights = seq.task_weights
        self._tasks = [task for task in TASKS if weights[task] > 0]
        w = np.array([weights[task] for task in self._tasks], np.float64)
        self._task_p = w / w.sum()
        # Generator.choice(n, p=p)'s cumulative weights: one uniform draw through them picks
        # the task choice would, without choice's checks of p on every call
        cdf = self._task_p.cumsum()
        cdf /= cdf[-1]
        self._task_cdf = cdf.tolist()

    def _layout(self):
        """The media segment's per-token template, shared by every example."""
        rc = self.rows * self.cols
        row, col = np.divmod(np.arange(rc), self.cols)
        order, modality, time, rows, cols, step = [], [], [], [], [], []
        # Each audio latent joins the video latent whose time span holds its start: video
        # latent i starts at frame 0 (i = 0) or 1 + t_down (i - 1); audio latent j at sample
        # j * hop * a_down. Times are in audio latents (exact integers when a video latent
        # starts on an audio latent boundary, as in every named config).
        cfg = self.config
        per_audio = cfg.audio.hop * cfg.audio.a_down
        starts = np.array([0] + [(1 + cfg.video_vae.t_down * (i - 1))
                                 * cfg.data.samples_per_frame for i in range(1, self.t)])
        group = np.searchsorted(starts, np.arange(self.a) * per_audio, side="right") - 1
        for i in range(self.t):
            audio = np.flatnonzero(group == i)
            # Index into concat([video tokens [t * R * W], audio latents [a]]).
            order += [i * rc + np.arange(rc), self.t * rc + audio]
            modality += [np.full(rc, VIDEO), np.full(len(audio), AUDIO)]
            time += [np.full(rc, starts[i] // per_audio), audio]
            rows += [row, np.full(len(audio), self.rows)]
            cols += [col, np.zeros(len(audio), int)]
            step += [np.full(rc + len(audio), i)]
        def cat(parts):
            return np.concatenate(parts).astype(np.int32)

        self._order = cat(order)  # [M]
        self._modality = cat(modality)  # [M]
        self._positions = np.stack([cat(time), cat(rows), cat(cols)], -1)  # [M, 3], offset 0
        self._step = cat(step)  # [M] latent time step of each token
        # [t + 1]: tokens of latent step i are [bounds[i], bounds[i + 1]) of the segment
        self._bounds = np.searchsorted(self._step, np.arange(self.t + 1)).astype(np.int32)
        self._media_span = int(self._positions[:, 0].max()) + 1  # rotary times it covers
        self._media_blocks = self.t if self.causal else 1

    @property
    def latent_step(self) -> np.ndarray:
        """int32 [M]: the latent time step (0 .. t-1) of each media token, in layout order."""
        return self._step.copy()

    @property
    def modality(self) -> np.ndarray:
        """int32 [M]: VIDEO or AUDIO, each media token's modality, in layout order."""
        return self._modality.copy()

    def step_span(self, i: int) -> tuple[int, int]:
        """(first, last + 1): the media tokens of latent time step i, in layout order."""
        return int(self._bounds[i]), int(self._bounds[i + 1])

    # ------------------------------------------------------------------------------------------
    # One example
    # ------------------------------------------------------------------------------------------

    def sample_task(self, rng: np.random.Generator) -> str:
        """A task drawn from `sequence.task_weights` (normalized; weight 0 is never drawn)."""
        return self._tasks[bisect.bisect_right(self._task_cdf, rng.random())]

    def noise_level(self, rng: np.random.Generator) -> float:
        """t = shift(sigmoid(normal(noise_mean, noise_std))), in [MIN_NOISE, 1]."""
        seq = self.config.sequence
        t = 1.0 / (1.0 + np.exp(-rng.normal(seq.noise_mean, seq.noise_std)))
        s = seq.noise_shift
        return min(max(float(s * t / (1.0 + (s - 1.0) * t)), MIN_NOISE), 1.0)

    def patchify(self, video_thwc: np.ndarray) -> np.ndarray:
        """Video latents [..., t, h, w, C] -> tokens [..., t, R * W, p * p * C], in
        (p_row, p_col, C) order."""
        *lead, t, h, w, c = video_thwc.shape
        p, n = self.p, len(lead)
        x = video_thwc.reshape(*lead, t, h // p, p, w // p, p, c)
        x = x.transpose(*range(n), n, n + 1, n + 3, n + 2, n + 4, n + 5)
        return x.reshape(*lead, t, (h // p) * (w // p), p * p * c)

    def media_features(self, video_thwc: np.ndarray, audio_ac: np.ndarray) -> np.ndarray:
        """Clean features [..., M, F] of clips' media segments, in layout order, zero-padded
        to F, from video latents [..., t, h, w, C] and audio latents [..., a, Ca]."""
        lead = video_thwc.shape[:-4]
        video = self.patchify(video_thwc).reshape(*lead, -1, self.config.video_token_dim)
        nv, ca = video.shape[-2], audio_ac.shape[-1]
        feats = np.zeros((*lead, nv + audio_ac.shape[-2], self.media_dim), np.float32)
        feats[..., :nv, :video.shape[-1]] = video
        feats[..., nv:, :ca] = audio_ac
        return feats[..., self._order, :]

    def draw(self, task: str, rng: np.random.Generator) -> Draw:
        """The random choices of one example laid out for `task` (see `build`).

        The draws always happen in this order, so one seed gives one sequence; the options
        draw only when they are on, so the draws of every other config stay as they were.
        """
        if task not in TASK_IDS:
            raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
        seq = self.config.sequence
        drop = task in CAPTION_CONDITIONED and rng.random() < seq.caption_dropout
        level = self.noise_level(rng) if task != "video_to_caption" else 0.0
        # c clean steps for continuation, 1 <= c <= t - 1
        noised = self.noised_mask(task, int(rng.integers(1, self.t))
                                  if task == "continuation" else 1)
        if task != "video_to_caption" and seq.step_noise > 0 and rng.random() < seq.step_noise:
            # one level per latent time step
            level = np.array([self.noise_level(rng) for _ in range(self.t)])[self._step]
        if (task not in ("video_to_caption", "continuation") and seq.clean_past > 0
                and rng.random() < seq.clean_past):
            noised = noised & (self._step >= int(rng.integers(1, self.t)))
        return Draw(task, bool(drop), level, noised)

    def build(self, example: dict, task: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One example laid out for `task` (see the module docstring).

        Args:
          example: a cached example: `text_ids` int [L] (bos .. eos), `video_latents`
            float32 [t, h, w, C], `audio_latents` float32 [a, Ca]; other keys are ignored.
          task: a name in `config.TASKS`.
          rng: draws caption dropout, the noise level, the continuation length and, with
            `sequence.step_noise`, whether and which noise levels are drawn per time step.

        Returns:
          Per-token arrays of length n: `tokens` int32 [n] (0 on media), `modality` int32 [n],
          `block` int32 [n], `positions` int32 [n, 3], `media` float32 [n, F] (clean
          features, 0 on text), `noise` float32 [n] (0 = clean), `targets` int32 [n] (next id
          in the same text segment, else 0), `text_loss` and `media_loss` float32 [n] (1 where
          that loss applies), `task` int32 [n].
        """
        d = self.draw(task, rng)
        caption = self._caption(example)
        video, audio = self._latents(example)
        out = self._empty(self._length(caption, d))
        _, at, offset, block = self._write(out, slice(None), caption, d)
        self.write_media(out, slice(at, at + len(self._modality)),
                         self.media_features(video, audio), d.noised, d.level, offset, block)
        return {key: out[key] for key in EXAMPLE_KEYS}

    def prepare(self, example: dict) -> dict[str, Any]:
        """What a training batch needs of a cached example, whatever its draw: `id`, the
        cut caption ids `caption` int32 [n] (and, with `data.every_language`, `captions`: the
        cut ids in each of `text.languages`, for `read_caption`) and the clean media features
        `media` float32 [M, F] in layout order (`batch_drawn`'s input; the loader holds them
        in memory).

        Raises:
          ValueError: the example does not have this config's latent shapes, or its captions
            in every language are not one a language.
        """
        video, audio = self._latents(example)
        out = {"id": example.get("id", "?"), "caption": self._caption(example),
               "media": self.media_features(video, audio)}
        every = np.asarray(example.get("every_text_ids", ()), np.int32)
        if len(every) and self.config.data.every_language:
            captions = split_captions(every)
            languages = self.config.text.languages
            if every[0] != BOS_ID or len(captions) != len(languages):
                raise ValueError(
                    f"example {out['id']!r} has {len(captions)} captions in its every_text_ids "
                    f"for the {len(languages)} text.languages {list(languages)} (re-run `o1 "
                    f"data encode`, or set data.every_language=false)")
            out["captions"] = [self.cut_caption(c) for c in captions]
        return out

    def read_caption(self, prepared: dict, rng: np.random.Generator) -> dict:
        """The prepared example (`prepare`) with the caption one visit reads: for an example
        with its caption in every language, one of them drawn with `data.language_weights`
        (no draw otherwise)."""
        if "captions" not in prepared:
            return prepared
        p = list(self.config.language_p.values())
        return {**prepared, "caption": prepared["captions"][int(rng.choice(len(p), p=p))]}

    def batch_drawn(self, rows: list[list[tuple[dict, Draw]]], seq_len: int
                    ) -> dict[str, np.ndarray]:
        """Rows of [B, seq_len] from prepared examples (`prepare`) and their draws, each row
        holding its examples one after another: the same arrays as `batch` of `build`s with
        those draws, written in place (the training pipeline's path, one batch at a time).

        Raises:
          ValueError: a row's examples do not fit in `seq_len`.
        """
        flat = [pair for row in rows for pair in row]
        out = self._empty((len(rows), seq_len))
        media = []  # (row, first token, time offset, block) of each media segment
        for r, row in enumerate(rows):
            lengths = [self._length(ex["caption"], d) for ex, d in row]
            _check_fits(lengths, seq_len)
            at = first_block = 0
            for i, (ex, d) in enumerate(row):
                span = (r, slice(at, at + lengths[i]))
                blocks, m_at, offset, block = self._write(out, span, ex["caption"], d,
                                                          first_block)
                media.append((r, at + m_at, offset, block))
                out["segment_ids"][span] = i + 1
                first_block += blocks
                at += lengths[i]
        r, at, offset, block = (np.array(x) for x in zip(*media, strict=True))
        m = len(self._modality)
        index = (np.broadcast_to(r[:, None], (len(r), m)), at[:, None] + np.arange(m))
        levels, noised = np.empty((len(flat), m)), np.empty((len(flat), m), bool)
        for i, (_, d) in enumerate(flat):
            levels[i], noised[i] = d.level, d.noised
        feats = np.stack([ex["media"] for ex, _ in flat])  # [n, M, F]
        self.write_media(out, index, feats, noised, levels, offset, block)
        return out

    def _latents(self, example: dict) -> tuple[np.ndarray, np.ndarray]:
        video = np.asarray(example["video_latents"], np.float32)
        audio = np.asarray(example["audio_latents"], np.float32)
        want_v = (self.t, *self.latent_shape)
        want_a = (self.a, self.config.audio.channels)
        if video.shape != want_v or audio.shape != want_a:
            raise ValueError(f"example {example.get('id', '?')!r} has video latents "
                             f"{video.shape} and audio latents {audio.shape}; this config "
                             f"needs {want_v} and {want_a} (re-run `o1 data encode`?)")
        return video, audio

    def _caption(self, example: dict) -> np.ndarray:
        return self.cut_caption(np.asarray(example["text_ids"], np.int32))

    def _length(self, caption: np.ndarray, d: Draw) -> int:
        """Tokens of an example with this caption and draw."""
        first = len(caption) + 1 if self._conditioned(d) else 1  # [caption.., <media>]
        last = len(caption) + 1 if d.task == "video_to_caption" else 0  # [</media>, caption..]
        return first + len(self._modality) + last

    @staticmethod
    def _conditioned(d: Draw) -> bool:
        return d.task in CAPTION_CONDITIONED and not d.drop

    def _write(self, out: dict[str, np.ndarray], span, caption: np.ndarray, d: Draw,
               first_block: int = 0) -> tuple[int, int, int, int]:
        """Writes one example's text segments and task (the module docstring's layout for
        `d.task`) into `out[key][span]`, blocks numbered from `first_block`.

        `out` holds `_empty` arrays (zeros, PAD_BLOCK blocks): only non-zero values are
        written. `span` indexes the example's tokens (a slice, or (row, slice)). Returns the
        example's number of blocks and where its media segment goes, for `write_media`: its
        first token (counted from the span's start), time offset and first block.
        """
        start = np.array([MEDIA_START_ID], np.int32)
        # (text ids, whether the LM loss applies), with None for the media segment
        segments = [(np.concatenate([caption, start]) if self._conditioned(d) else start, False),
                    (None, False)]
        if d.task == "video_to_caption":
            segments.append((np.concatenate([[MEDIA_END_ID], caption]).astype(np.int32), True))
        views = {key: out[key][span] for key in EXAMPLE_KEYS}
        at = pos = 0
        block = first_block
        for ids, lossed in segments:
            if ids is None:
                media = (at, pos, block)
                at += len(self._modality)
                pos += self._media_span
                block += self._media_blocks
            else:
                self.write_text(views, slice(at, at + len(ids)), ids, pos, lossed, block)
                at += len(ids)
                pos += len(ids)
                block += 1
        views["task"][:] = TASK_IDS[d.task]
        return block - first_block, *media

    def noised_mask(self, task: str, context_steps: int = 1) -> np.ndarray:
        """bool [M]: the media tokens `task` generates (the rest are clean context).

        `context_steps` is the number of clean latent time steps of a continuation (1 to t-1).
        """
        if task == "video_to_caption":
            return np.zeros(len(self._modality), bool)
        if task == "video_to_audio":
            return self._modality == AUDIO
        if task == "audio_to_video":
            return self._modality == VIDEO
        if task == "image_to_video":
            return ~((self._modality == VIDEO) & (self._step == 0))
        if task == "continuation":
            if not 1 <= context_steps < self.t:
                raise ValueError(f"a continuation keeps 1 to {self.t - 1} clean latent steps, "
                                 f"got {context_steps}")
            return self._step >= context_steps
        return np.ones(len(self._modality), bool)  # text_to_av, unconditional

    def cut_caption(self, ids: np.ndarray) -> np.ndarray:
        """Caption ids cut to max_text_len, keeping the first (bos) and last (eos) ids."""
        n = self.config.sequence.max_text_len
        return ids if len(ids) <= n else np.concatenate([ids[:n - 1], ids[-1:]])

    def text_segment(self, ids: np.ndarray, start: int, lossed: bool = False
                     ) -> dict[str, np.ndarray]:
        """Per-token arrays (as `build` returns, without task) of a text segment whose first
        position is `start`; `block` is 0 (one block, numbered by `join_segments`)."""
        out = self._empty(len(ids))
        self.write_text(out, slice(None), ids, start, lossed)
        return {key: out[key] for key in EXAMPLE_KEYS if key != "task"}

    def media_segment(self, video: np.ndarray, audio: np.ndarray, noised: np.ndarray,
                      level: float | np.ndarray, offset: int) -> dict[str, np.ndarray]:
        """Per-token arrays of a clip's media segment at time `offset`: clean features of
        `video` [t, h, w, C] and `audio` [a, Ca], noise level `level` (one, or one per token
        [M]) where `noised` [M]. `block` counts from 0 inside the segment: 0 everywhere, or
        the latent time step under frame-causal attention (`join_segments` numbers on)."""
        out = self._empty(len(self._modality))
        self.write_media(out, slice(None), self.media_features(video, audio), noised, level,
                         offset, 0)
        return {key: out[key] for key in EXAMPLE_KEYS if key != "task"}

    def write_text(self, out: dict[str, np.ndarray], span: slice, ids: np.ndarray,
                   start: int, lossed: bool = False, block: int = 0) -> None:
        """Writes a text segment of `ids` at positions start, start + 1, ... into
        `out[key][span]` (zeroed arrays of `_empty`), as block `block`; the LM loss applies
        to every token but the last where `lossed`."""
        m = len(ids)
        q = np.arange(start, start + m, dtype=np.int32)
        out["tokens"][span] = ids
        out["block"][span] = block
        out["modality"][span] = TEXT
        out["positions"][span] = q[:, None]
        out["targets"][span][:-1] = ids[1:]
        if lossed:
            out["text_loss"][span][:-1] = 1.0  # the last token has no next token to predict
        out["media"][span] = 0.0
        for key in ("noise", "media_loss"):
            out[key][span] = 0.0

    def write_media(self, out: dict[str, np.ndarray], index, feats: np.ndarray,
                    noised: np.ndarray, level: float | np.ndarray, offset: int | np.ndarray,
                    block: int | np.ndarray) -> None:
        """Writes n media segments into `out[key][index]` (zeroed arrays of `_empty`):
        clean features `feats` [n, M, F] in layout order, noise `level` (per segment [n],
        or per token [n, M]) where `noised` [n, M], times from `offset` [n], blocks from
        `block` [n]: one block, or one per latent time step (frame-causal). One segment
        may drop the leading n axis everywhere; `index` puts an [n, M] grid of tokens in
        `out` (a slice for one segment, or row and column index arrays [n, M])."""
        offset, block = np.asarray(offset)[..., None], np.asarray(block)[..., None]
        level = np.asarray(level)
        if level.ndim < np.ndim(noised):
            level = level[..., None]
        positions = np.broadcast_to(self._positions, (*np.shape(noised), 3)).copy()
        positions[..., 0] += offset
        out["tokens"][index] = 0
        out["block"][index] = block + (self._step if self.causal else 0)
        out["modality"][index] = self._modality
        out["positions"][index] = positions
        out["media"][index] = feats
        out["noise"][index] = np.where(noised, level, 0.0)
        out["targets"][index] = 0
        out["text_loss"][index] = 0.0
        out["media_loss"][index] = noised

    def unpack_media(self, media_mf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of `media_features`: [M, F] in layout order -> video [t, h, w, C], audio [a, Ca].

        Works on any per-token media array (e.g. predicted velocities of a media segment).
        """
        flat = np.empty_like(media_mf)
        flat[self._order] = media_mf
        nv = self.t * self.rows * self.cols
        p, c = self.p, self.latent_shape[-1]
        video = flat[:nv, :self.config.video_token_dim].reshape(
            self.t, self.rows, self.cols, p, p, c).transpose(0, 1, 3, 2, 4, 5)
        return (video.reshape(self.t, *self.latent_shape),
                flat[nv:, :self.config.audio.channels])

    # ------------------------------------------------------------------------------------------
    # Packing and batching
    # ------------------------------------------------------------------------------------------

    def pack(self, examples: list[dict[str, np.ndarray]], seq_len: int) -> dict[str, np.ndarray]:
        """Built examples one after another in one row of `seq_len` tokens.

        Adds `segment_ids` int32 [L] (1, 2, ... per example, 0 on padding). Blocks are offset so
        that no two examples share a block id; padding has block PAD_BLOCK and zeros elsewhere.

        Raises:
          ValueError: the examples do not fit in `seq_len`.
        """
        lengths = [len(ex["tokens"]) for ex in examples]
        _check_fits(lengths, seq_len)
        row = self._empty(seq_len)
        at = first_block = 0
        for i, ex in enumerate(examples):
            span = slice(at, at + lengths[i])
            for key in EXAMPLE_KEYS:
                row[key][span] = ex[key]
            row["block"][span] = ex["block"] + first_block
            row["segment_ids"][span] = i + 1
            first_block += int(ex["block"].max()) + 1
            at += lengths[i]
        return row

    def _empty(self, shape: int | tuple[int, ...]) -> dict[str, np.ndarray]:
        """Padding of `shape` tokens: every `Batch` key zero, blocks PAD_BLOCK."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        row = {key: np.zeros(shape, np.int32) for key in batch_lib.BATCH_KEYS}
        row["positions"] = np.zeros((*shape, 3), np.int32)
        row["media"] = np.zeros((*shape, self.media_dim), np.float32)
        for key in ("noise", "text_loss", "media_loss"):
            row[key] = np.zeros(shape, np.float32)
        row["block"][:] = PAD_BLOCK
        return row

    def batch(self, rows: list[list[dict[str, np.ndarray]]], seq_len: int
              ) -> dict[str, np.ndarray]:
        """Packs each list of built examples into a row; arrays [B, seq_len, ...]."""
        packed = [self.pack(row, seq_len) for row in rows]
        return {key: np.stack([p[key] for p in packed]) for key in packed[0]}


def _check_fits(lengths: list[int], seq_len: int) -> None:
    if sum(lengths) > seq_len:
        raise ValueError(f"examples of lengths {lengths} ({sum(lengths)} tokens) do not fit "
                         f"in a row of seq_len={seq_len}; pack fewer examples per row or "
                         f"raise sequence.seq_len")


def join_segments(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One example's segments (`text_segment`, `media_segment`), in order, as one set of
    per-token arrays, each segment's blocks numbered on from the blocks before it."""
    blocks, first = [], 0
    for part in parts:
        blocks.append(part["block"] + first)
        first = int(blocks[-1].max()) + 1
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    out["block"] = np.concatenate(blocks)
    return out


# ----------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------


def attention_mask(segment_ids: np.ndarray, block: np.ndarray, modality: np.ndarray
                   ) -> np.ndarray:
    """The block-causal mask of whole rows (`o1.batch.attention_mask` with queries = keys).

    Query q sees key k iff segment_ids[q] == segment_ids[k] != 0 and (k <= q, or k is in q's
    block and q is a media token). Padding queries (segment 0) see only themselves, so no row
    of the mask is empty and the softmax never divides by zero; real queries never see padding.

    Args:
      segment_ids: int [..., L], 0 = padding.
      block: int [..., L].
      modality: int [..., L].

    Returns:
      bool [..., L, L], indexed [..., query, key].
    """
    shape = np.shape(segment_ids)
    seg, blk, mod = (np.asarray(x).reshape(-1, shape[-1]) for x in (segment_ids, block, modality))
    index = np.arange(shape[-1])
    mask = batch_lib.attention_mask(seg, blk, mod, index, seg, blk, index)
    return mask.reshape(*shape, shape[-1])


def visible_keys(segment_ids: np.ndarray, block: np.ndarray, modality: np.ndarray) -> int:
    """Query-key pairs that real (non-padding) queries attend to, without the L x L mask.

    Equals `attention_mask(...).sum()` minus the number of padding tokens (whose only key is
    themselves). A query sees the keys of its segment up to itself, plus, for a media query,
    the later keys of its (segment, block). Arguments as in `attention_mask`.
    """
    segment_ids, block, modality = (np.asarray(x, np.int64).reshape(-1, np.shape(x)[-1])
                                    for x in (segment_ids, block, modality))
    # One integer key per (row, segment) and per (row, segment, block) group.
    rows = np.arange(len(segment_ids))[:, None]
    seg_key = rows * (segment_ids.max() + 1) + segment_ids
    blk_key = seg_key * (block.max() - block.min() + 1) + block - block.min()
    seg_rank, _ = _rank_in_group(seg_key.reshape(-1))
    blk_rank, blk_size = _rank_in_group(blk_key.reshape(-1))
    real = segment_ids.reshape(-1) != 0
    media = modality.reshape(-1) != TEXT
    later = np.where(media, blk_size - blk_rank - 1, 0)
    return int(np.sum(np.where(real, seg_rank + 1 + later, 0)))


def _rank_in_group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For integer `keys` [N]: how many earlier entries share the key, and the group size."""
    keys = keys - keys.min()
    counts = np.bincount(keys)
    # a stable sort of keys below 2^16 is a radix sort, linear in N
    order = np.argsort(keys.astype(np.uint16) if len(counts) <= 2**16 else keys, kind="stable")
    first = np.cumsum(counts) - counts
    rank = np.empty_like(keys)
    rank[order] = np.arange(len(keys)) - first[keys[order]]
    return rank, counts[keys]


def random_example(config: Config, seed: int = 0, caption_len: int = 6) -> dict[str, np.ndarray]:
    """A cached example of the config's shapes with N(0, 1) latents (normalized latents have
    that scale) and `caption_len` random caption ids (bos .. eos): for benchmarks and tests."""
    rng = np.random.default_rng(seed)
    words = rng.integers(MEDIA_END_ID + 1, config.text.vocab_size, caption_len - 2)
    return {
        "text_ids": np.array([BOS_ID, *words, EOS_ID], np.int32),
        "video_latents": rng.standard_normal(
            (config.num_video_latents, *config.latent_grid, config.video_vae.channels),
            np.float32),
        "audio_latents": rng.standard_normal(
            (config.num_audio_latents, config.audio.channels), np.float32),
    }
