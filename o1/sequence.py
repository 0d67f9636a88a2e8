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
        return self._tasks[rng.choice(len(self._tasks), p=self._task_p)]

    def noise_level(self, rng: np.random.Generator) -> float:
        """t = shift(sigmoid(normal(noise_mean, noise_std))), in [MIN_NOISE, 1]."""
        seq = self.config.sequence
        t = 1.0 / (1.0 + np.exp(-rng.normal(seq.noise_mean, seq.noise_std)))
        s = seq.noise_shift
        return float(np.clip(s * t / (1.0 + (s - 1.0) * t), MIN_NOISE, 1.0))

    def patchify(self, video_thwc: np.ndarray) -> np.ndarray:
        """Video latents [t, h, w, C] -> tokens [t, R * W, p * p * C], (p_row, p_col, C) order."""
        t, h, w, c = video_thwc.shape
        p = self.p
        x = video_thwc.reshape(t, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(t, (h // p) * (w // p), p * p * c)

    def media_features(self, video_thwc: np.ndarray, audio_ac: np.ndarray) -> np.ndarray:
        """Clean features [M, F] of a clip's media segment, in layout order, zero-padded to F."""
        f = self.media_dim
        video = self.patchify(video_thwc).reshape(-1, self.config.video_token_dim)
        feats = np.zeros((video.shape[0] + audio_ac.shape[0], f), np.float32)
        feats[:video.shape[0], :video.shape[1]] = video
        feats[video.shape[0]:, :audio_ac.shape[1]] = audio_ac
        return feats[self._order]

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
        if task not in TASK_IDS:
            raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
        video = np.asarray(example["video_latents"], np.float32)
        audio = np.asarray(example["audio_latents"], np.float32)
        want_v = (self.t, *self.latent_shape)
        want_a = (self.a, self.config.audio.channels)
        if video.shape != want_v or audio.shape != want_a:
            raise ValueError(f"example {example.get('id', '?')!r} has video latents "
                             f"{video.shape} and audio latents {audio.shape}; this config "
                             f"needs {want_v} and {want_a} (re-run `o1 data encode`?)")
        caption = self.cut_caption(np.asarray(example["text_ids"], np.int32))
        start = np.array([MEDIA_START_ID], np.int32)

        # Draws always happen in this order, so one seed gives one sequence.
        drop = task in CAPTION_CONDITIONED and rng.random() < self.config.sequence.caption_dropout
        level = self.noise_level(rng) if task != "video_to_caption" else 0.0
        # c clean steps for continuation, 1 <= c <= t - 1
        noised = self.noised_mask(task, int(rng.integers(1, self.t))
                                  if task == "continuation" else 1)
        # The options below draw only when they are on, so the draws of every other config
        # stay as they were.
        seq = self.config.sequence
        if task != "video_to_caption" and seq.step_noise > 0 and rng.random() < seq.step_noise:
            # one level per latent time step
            level = np.array([self.noise_level(rng) for _ in range(self.t)])[self._step]
        if (task not in ("video_to_caption", "continuation") and seq.clean_past > 0
                and rng.random() < seq.clean_past):
            noised = noised & (self._step >= int(rng.integers(1, self.t)))

        conditioned = task in CAPTION_CONDITIONED and not drop
        # (text ids, whether the LM loss applies), with None for the media segment.
        segments = [(np.concatenate([caption, start]) if conditioned else start, False),
                    (None, False)]
        if task == "video_to_caption":
            segments.append((np.concatenate([[MEDIA_END_ID], caption]).astype(np.int32), True))

        parts, pos = [], 0
        for ids, lossed in segments:
            if ids is None:
                part = self.media_segment(video, audio, noised, level, pos)
            else:
                part = self.text_segment(ids, pos, lossed)
            pos = int(part["positions"][:, 0].max()) + 1
            parts.append(part)
        out = join_segments(parts)
        out["task"] = np.full(len(out["tokens"]), TASK_IDS[task], np.int32)
        return {key: out[key] for key in EXAMPLE_KEYS}

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
        m = len(ids)
        q = np.arange(start, start + m, dtype=np.int32)
        loss = np.zeros(m, np.float32)
        if lossed:
            loss[:-1] = 1.0  # the last token has no next token to predict
        return {
            "tokens": ids.astype(np.int32),
            "block": np.zeros(m, np.int32),
            "modality": np.full(m, TEXT, np.int32),
            "positions": np.stack([q, q, q], -1),
            "media": np.zeros((m, self.media_dim), np.float32),
            "noise": np.zeros(m, np.float32),
            "targets": np.append(ids[1:], 0).astype(np.int32),
            "text_loss": loss,
            "media_loss": np.zeros(m, np.float32),
        }

    def media_segment(self, video: np.ndarray, audio: np.ndarray, noised: np.ndarray,
                      level: float | np.ndarray, offset: int) -> dict[str, np.ndarray]:
        """Per-token arrays of a clip's media segment at time `offset`: clean features of
        `video` [t, h, w, C] and `audio` [a, Ca], noise level `level` (one, or one per token
        [M]) where `noised` [M]. `block` counts from 0 inside the segment: 0 everywhere, or
        the latent time step under frame-causal attention (`join_segments` numbers on)."""
        m = len(self._modality)
        positions = self._positions.copy()
        positions[:, 0] += offset
        return {
            "tokens": np.zeros(m, np.int32),
            "block": self._step.copy() if self.causal else np.zeros(m, np.int32),
            "modality": self._modality.copy(),
            "positions": positions,
            "media": self.media_features(video, audio),
            "noise": np.where(noised, level, 0.0).astype(np.float32),
            "targets": np.zeros(m, np.int32),
            "text_loss": np.zeros(m, np.float32),
            "media_loss": noised.astype(np.float32),
        }

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
        if sum(lengths) > seq_len:
            raise ValueError(f"examples of lengths {lengths} ({sum(lengths)} tokens) do not fit "
                             f"in a row of seq_len={seq_len}; pack fewer examples per row or "
                             f"raise sequence.seq_len")
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

    def _empty(self, seq_len: int) -> dict[str, np.ndarray]:
        row = {key: np.zeros(seq_len, np.int32) for key in batch_lib.BATCH_KEYS}
        row["positions"] = np.zeros((seq_len, 3), np.int32)
        row["media"] = np.zeros((seq_len, self.media_dim), np.float32)
        for key in ("noise", "text_loss", "media_loss"):
            row[key] = np.zeros(seq_len, np.float32)
        row["block"][:] = PAD_BLOCK
        return row

    def batch(self, rows: list[list[dict[str, np.ndarray]]], seq_len: int
              ) -> dict[str, np.ndarray]:
        """Packs each list of built examples into a row; arrays [B, seq_len, ...]."""
        packed = [self.pack(row, seq_len) for row in rows]
        return {key: np.stack([p[key] for p in packed]) for key in packed[0]}


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
    segment_ids, block, modality = (np.asarray(x).reshape(-1, np.shape(x)[-1])
                                    for x in (segment_ids, block, modality))
    row = np.broadcast_to(np.arange(len(segment_ids))[:, None], segment_ids.shape)
    seg_rank, _ = _rank_in_group(np.stack([row, segment_ids], -1).reshape(-1, 2))
    blk_rank, blk_size = _rank_in_group(np.stack([row, segment_ids, block], -1).reshape(-1, 3))
    real = segment_ids.reshape(-1) != 0
    media = modality.reshape(-1) != TEXT
    later = np.where(media, blk_size - blk_rank - 1, 0)
    return int(np.sum(np.where(real, seg_rank + 1 + later, 0)))


def _rank_in_group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows of `keys` [N, K]: how many earlier rows share the key, and the group size."""
    _, group, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    first = np.cumsum(counts) - counts
    rank = np.empty_like(group)
    rank[order] = np.arange(len(group)) - first[group[order]]
    return rank, counts[group]


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
