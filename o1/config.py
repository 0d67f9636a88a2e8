"""Typed, nested, frozen configs for every stage of o1.

A `Config` is a tree of frozen dataclasses. Named configs (`o1.configs.tiny`,
`o1.configs.quickstart`, ...) build one; command lines change it with dotted overrides
(`data.fps=8 video_vae.t_down=2`) parsed by OmegaConf, and every dataclass validates itself in
`__post_init__` with a message that says what to change.

The module is long (about 700 lines) on purpose: it is the one place every setting is named,
with a comment and a check each, and the checks that span sections (clip geometry against the
VAEs and the patch size, the audio/video latent-rate ratio) need them all in view.

Clip geometry (see docs/design.md, "Clip geometry and time alignment"):

  T = 1 + t_down * n video frames at `fps`; frame i shows time i / fps.
  The clip's audio spans the same T / fps seconds: `samples_per_frame = sample_rate / fps`
  samples per frame, so frame i owns samples [i * spf, (i + 1) * spf).
  Video latent rate r_v = fps / t_down, audio latent rate r_a = sample_rate / (hop * a_down),
  and r_a = k * r_v for an integer k.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import os
import pathlib
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any, ClassVar, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from o1.avshapes.world import COLOURS, SHAPES


class ConfigError(ValueError):
    """A config value or override that cannot work; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Clip geometry and the AV-Shapes world."""

    height: int = 64  # frame height in pixels
    width: int = 64  # frame width in pixels
    fps: int = 16  # video frames per second
    seconds: float = 2.0  # clip length; T = 1 + t_down * round(seconds * fps / t_down) frames
    sample_rate: int = 16_000  # mono audio samples per second
    min_objects: int = 1  # fewest moving objects in an AV-Shapes clip
    max_objects: int = 2  # most moving objects in an AV-Shapes clip
    object_size: float = 0.22  # object diameter as a fraction of the shorter box side
    tone_seconds: float = 0.06  # length of the tone burst a wall bounce starts
    noise_level: float = 0.002  # std of white background noise in the waveform (0 = silent)
    # "colour shape" pairs that never appear in train; they form the `holdout` split
    holdout: tuple[str, ...] = ()
    num_train: int = 2000  # clips in the train split of `o1 data build avshapes`
    num_val: int = 200  # clips in the validation split
    num_test: int = 200  # clips in the test split
    num_holdout: int = 200  # clips in the holdout split (only with `holdout` pairs)
    # how often each of `text.languages` captions an AV-Shapes clip (its `caption`, drawn with
    # these weights) and, with `every_language`, how often training reads each; empty = equally
    language_weights: tuple[float, ...] = ()
    # With several `text.languages`, AV-Shapes also writes each clip's caption in every one of
    # them, and training reads one of them a visit (drawn with `language_weights`), so every
    # language captions every clip rather than a share of them. False: one language a clip.
    every_language: bool = True

    def __post_init__(self):
        if self.language_weights and (min(self.language_weights) < 0
                                      or sum(self.language_weights) <= 0):
            raise ConfigError(f"data.language_weights must be >= 0 and not all 0, got "
                              f"{list(self.language_weights)}")
        for name in ("height", "width", "fps", "sample_rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"data.{name} must be positive, got {getattr(self, name)}")
        if self.height % 2 or self.width % 2:
            raise ConfigError(
                f"data.height and data.width must be even for H.264 (yuv420p), got "
                f"{self.height}x{self.width}; try {self.height + self.height % 2}x"
                f"{self.width + self.width % 2}"
            )
        if self.sample_rate % self.fps:
            near = sorted({(self.sample_rate // self.fps) * self.fps,
                           (self.sample_rate // self.fps + 1) * self.fps})
            raise ConfigError(
                f"data.sample_rate ({self.sample_rate}) must be a multiple of data.fps "
                f"({self.fps}) so every frame owns a whole number of samples; "
                f"try data.sample_rate={near[0]} or {near[1]}"
            )
        if not 1 <= self.min_objects <= self.max_objects <= 4:
            raise ConfigError(
                f"need 1 <= data.min_objects <= data.max_objects <= 4, got "
                f"{self.min_objects}..{self.max_objects}"
            )
        if not 0.05 <= self.object_size <= 0.45:
            raise ConfigError(f"data.object_size must be in [0.05, 0.45], got {self.object_size}")
        if self.seconds <= 0 or self.tone_seconds <= 0 or self.noise_level < 0:
            raise ConfigError("data.seconds and data.tone_seconds must be > 0, noise_level >= 0")
        for pair in self.holdout:
            parse_pair(pair)
        for name in ("num_train", "num_val", "num_test", "num_holdout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name} must be >= 0, got {getattr(self, name)}")

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    @property
    def holdout_pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset(parse_pair(p) for p in self.holdout)


def parse_pair(pair: str) -> tuple[str, str]:
    """'red circle' -> ('red', 'circle'), checking both words."""
    words = pair.replace(":", " ").split()
    if len(words) != 2 or words[0] not in COLOURS or words[1] not in SHAPES:
        raise ConfigError(
            f"data.holdout entry {pair!r} must be 'COLOUR SHAPE' with COLOUR in "
            f"{sorted(COLOURS)} and SHAPE in {list(SHAPES)}, e.g. 'red circle'"
        )
    return words[0], words[1]


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The SentencePiece text tokenizer."""

    vocab_size: int = 512  # lowered, with a warning, when the captions cannot support it
    model_type: str = "unigram"  # SentencePiece model: unigram or bpe
    # languages of the captions (ISO 639-1) the model reads and writes; AV-Shapes captions each
    # clip in one of them (`data.language_weights`). With more than one, every caption starts
    # with its language's tag (`<it>` ...), which asks for a caption in that language
    languages: tuple[str, ...] = ("en",)

    def __post_init__(self):
        if not self.languages:
            raise ConfigError("text.languages must name at least one language, e.g. ['en']")
        if len(set(self.languages)) != len(self.languages):
            raise ConfigError(f"text.languages names a language twice: {list(self.languages)}")
        if self.vocab_size < 16:
            raise ConfigError(f"text.vocab_size must be >= 16, got {self.vocab_size}")
        if self.model_type not in ("unigram", "bpe"):
            raise ConfigError(f"text.model_type must be unigram or bpe, got {self.model_type!r}")


def _check_positive(section: str, cfg, names: Sequence[str]) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{section}.{name} must be positive, got {getattr(cfg, name)}")


def _check_training(section: str, cfg) -> None:
    for name in ("steps", "batch_size"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{section}.{name} must be positive, got {getattr(cfg, name)}")
    if not cfg.learning_rate > 0 or cfg.kl_weight < 0:
        raise ConfigError(f"{section}.learning_rate must be > 0 and {section}.kl_weight >= 0")
    if cfg.optimizer not in ("adam", "muon"):
        raise ConfigError(f"{section}.optimizer must be adam or muon, got {cfg.optimizer!r}")
    if not cfg.widths or min(cfg.widths) <= 0:
        raise ConfigError(f"{section}.widths must be positive channel counts, got {cfg.widths}")


@dataclasses.dataclass(frozen=True)
class VideoVAEConfig:
    """Causal video VAE: geometry, architecture and training."""

    t_down: int = 4  # frames per latent frame after the first (causal) frame
    s_down: int = 8  # spatial downsampling of height and width (a power of 2)
    channels: int = 16  # latent channels
    widths: tuple[int, ...] = (64, 128, 256)  # conv widths, full resolution first
    encoder_blocks: int = 2  # residual blocks at each resolution level of the encoder
    decoder_blocks: int = 2  # residual blocks at each resolution level of the decoder
    kl_weight: float = 1e-6  # weight of the KL term against the reconstruction loss
    steps: int = 4000  # optimizer steps
    batch_size: int = 8  # clips per step
    # latent frames of the random window each training clip is cut to (0 = the whole clip);
    # causality makes a window a valid clip, and short windows make steps several times cheaper
    train_crop: int = 0
    learning_rate: float = 1e-3  # peak learning rate (cosine decay after warm-up)
    optimizer: str = "adam"  # adam, or muon (orthogonalized updates of weight matrices)
    adam_learning_rate: float = 3e-3  # with muon: peak rate of biases and norm scales
    warmup_steps: int = 30  # steps of rising learning rate (at most a tenth of the steps)

    def __post_init__(self):
        for name in ("t_down", "s_down", "channels"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"video_vae.{name} must be positive, got {getattr(self, name)}")
        if self.s_down & (self.s_down - 1):
            raise ConfigError(f"video_vae.s_down must be a power of 2, got {self.s_down}")
        _check_training("video_vae", self)


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """Log-mel features, the audio VAE over mel time, and waveform reconstruction."""

    n_fft: int = 1024  # STFT window
    hop: int = 250  # samples between mel frames
    n_mels: int = 64  # mel bands
    a_down: int = 4  # mel frames per audio latent
    channels: int = 16  # audio latent channels
    widths: tuple[int, ...] = (128, 256)  # conv widths, full mel rate first
    kl_weight: float = 1e-6  # weight of the KL term against the reconstruction loss
    steps: int = 3000  # optimizer steps
    batch_size: int = 16  # clips per step
    learning_rate: float = 1e-3  # peak learning rate (cosine decay after warm-up)
    optimizer: str = "adam"  # adam, or muon (orthogonalized updates of weight matrices)
    adam_learning_rate: float = 3e-3  # with muon: peak rate of biases and norm scales
    warmup_steps: int = 30  # steps of rising learning rate (at most a tenth of the steps)
    vocoder: str = "griffin_lim"  # mel -> waveform; the only one so far
    griffin_lim_iters: int = 32  # Griffin-Lim phase iterations

    def __post_init__(self):
        for name in ("n_fft", "hop", "n_mels", "a_down", "channels", "griffin_lim_iters"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"audio.{name} must be positive, got {getattr(self, name)}")
        if self.vocoder != "griffin_lim":
            raise ConfigError(f"audio.vocoder must be 'griffin_lim', got {self.vocoder!r}")
        _check_training("audio", self)


@dataclasses.dataclass(frozen=True)
class TokenizerTrainConfig:
    """How `o1 tokenizers train` runs (the what is in text, video_vae and audio)."""

    log_every: int = 50  # steps between metric writes
    checkpoint_every: int = 500  # steps between checkpoints (and at the end, and on SIGTERM)
    stats_clips: int = 256  # train clips encoded to measure per-channel latent mean/std
    seed: int = 0  # parameter init and sampling seed


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """The grain pipeline that feeds training (batch sizes and seeds are each stage's own)."""

    # processes that build whole batches (0 = this process); the batches are the same for any
    # count, and a run may resume with another
    worker_count: int = 0
    # a latent cache whose split takes at most this many MB on disk is read once and held in
    # memory by each loading process (the batches are the same); 0 = read every batch from disk
    memory_mb: int = 2048

    def __post_init__(self):
        for name in ("worker_count", "memory_mb"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loader.{name} must be >= 0, got {getattr(self, name)}")


TASKS = ("text_to_av", "video_to_caption", "video_to_audio", "audio_to_video", "image_to_video",
         "continuation", "unconditional")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The unified decoder (docs/design.md, "Model")."""

    d_model: int = 512  # residual stream width
    num_layers: int = 8  # decoder blocks
    num_heads: int = 8  # query heads
    num_kv_heads: int = 8  # key/value heads (fewer than num_heads = grouped-query attention)
    head_dim: int = 64  # width of one head
    mlp_dim: int = 1536  # SwiGLU hidden width
    qk_norm: bool = True  # RMSNorm on queries and keys (stabilizes mixed-modality training)
    rope_theta: float = 10_000.0  # rotary base period
    # rotary frequency pairs given to the (time, row, column) axes; sums to head_dim / 2
    # (empty = a third each, the remainder to time)
    rope_sections: tuple[int, ...] = ()
    norm_eps: float = 1e-6  # RMSNorm epsilon
    dtype: str = "bfloat16"  # compute dtype; parameters and optimizer state stay float32
    # attention kernel (o1.nn.attention): xla (the reference, materializes [B, N, L, S]), cudnn
    # (cuDNN's fused kernel, any length; an error where it cannot run), or auto (cudnn on an
    # NVIDIA GPU with bfloat16 compute and a head_dim it supports, else xla)
    attention: str = "xla"
    remat: str = "none"  # rematerialization of each block: none, full, or dots (save matmuls)
    scan_layers: bool = False  # full passes run the blocks as one scan: compiled once, any depth
    init_std: float = 0.02  # std of the normal initializer of every weight matrix
    # What the media heads predict. "velocity": v = e - x_0 directly. "clean": the clean
    # latent x_0, turned into the velocity (x_t - x_0) / max(t, clean_min_noise) so the loss
    # and the sampler are unchanged (a velocity head carries the token's noise through the
    # residual stream; x_0 heads are the usual remedy for tokens as wide as the model). On
    # the 16-channel quickstart it did not help and cost sound and captions.
    predict: str = "velocity"
    clean_min_noise: float = 0.05  # floor of t in the "clean" conversion (caps its 1/t)
    # How media tokens learn their noise level. "input": a noise-level embedding is added to
    # each media token's input. "adaln": that, and every block's norms are scaled and shifted
    # and its residual branches gated per media token by the embedding (DiT's adaLN, with one
    # projection shared by all blocks plus a learned offset per block, as in PixArt-alpha);
    # text tokens are never modulated, and at initialization both give the same function.
    noise_conditioning: str = "input"
    # Per-head slopes of a distance penalty on attention between the media tokens of one
    # clip (ALiBi over space and time): head n adds -slope_n x (latent frames + rows +
    # columns apart) to its logits, so it starts out attending to a token's neighbours.
    # Empty = off; else one slope >= 0 per query head (0 = that head stays global).
    media_locality: tuple[float, ...] = ()

    def __post_init__(self):
        _check_positive("model", self, ("d_model", "num_layers", "num_heads", "num_kv_heads",
                                        "head_dim", "mlp_dim"))
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"model.num_heads ({self.num_heads}) must be a multiple of model.num_kv_heads "
                f"({self.num_kv_heads}); try model.num_kv_heads in "
                f"{[k for k in range(1, self.num_heads + 1) if self.num_heads % k == 0]}")
        if self.head_dim % 2:
            raise ConfigError(f"model.head_dim must be even for rotary embeddings, got "
                              f"{self.head_dim}")
        if self.rope_sections and (len(self.rope_sections) != 3
                                   or sum(self.rope_sections) != self.head_dim // 2
                                   or min(self.rope_sections) < 0):
            raise ConfigError(
                f"model.rope_sections must be 3 non-negative counts of frequency pairs summing "
                f"to head_dim / 2 = {self.head_dim // 2}, got {self.rope_sections}")
        if self.predict not in ("velocity", "clean"):
            raise ConfigError(f"model.predict must be velocity or clean, got {self.predict!r}")
        if self.media_locality and (len(self.media_locality) != self.num_heads
                                    or min(self.media_locality) < 0):
            raise ConfigError(f"model.media_locality must be empty or {self.num_heads} slopes "
                              f">= 0 (one per query head, model.num_heads), got "
                              f"{self.media_locality}")
        if self.noise_conditioning not in ("input", "adaln"):
            raise ConfigError(f"model.noise_conditioning must be input or adaln, got "
                              f"{self.noise_conditioning!r}")
        if not 0 < self.clean_min_noise <= 1:
            raise ConfigError(f"model.clean_min_noise must be in (0, 1], got "
                              f"{self.clean_min_noise}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"model.dtype must be float32 or bfloat16, got {self.dtype!r}")
        if self.attention not in ("xla", "cudnn", "auto"):
            raise ConfigError(f"model.attention must be xla, cudnn or auto, got "
                              f"{self.attention!r}")
        if self.remat not in ("none", "full", "dots"):
            raise ConfigError(f"model.remat must be none, full or dots, got {self.remat!r}")

    @property
    def rotary_sections(self) -> tuple[int, int, int]:
        """Frequency pairs of the (time, row, column) rotary axes."""
        if self.rope_sections:
            return tuple(self.rope_sections)  # type: ignore[return-value]
        pairs = self.head_dim // 2
        return (pairs - 2 * (pairs // 3), pairs // 3, pairs // 3)


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    """How cached examples become token sequences (docs/design.md, "One sequence, many tasks")."""

    seq_len: int = 0  # tokens per row (0 = just enough for examples_per_row examples)
    examples_per_row: int = 1  # examples packed into one row, kept apart by segment ids
    video_patch: int = 2  # p: video latents are cut into p x p patches, one token each
    max_text_len: int = 32  # caption tokens kept (bos .. eos), longer captions are cut
    # task mixture: relative weights (0 = never); normalized over the tasks listed
    text_to_av: float = 4.0
    video_to_caption: float = 2.0
    video_to_audio: float = 1.0
    audio_to_video: float = 1.0
    image_to_video: float = 1.0
    continuation: float = 1.0
    unconditional: float = 0.0
    caption_dropout: float = 0.1  # chance a conditioning caption is dropped (for guidance)
    noise_mean: float = 0.0  # logit-normal noise level: mean of the normal before the sigmoid
    noise_std: float = 1.0  # logit-normal noise level: std of the normal before the sigmoid
    noise_shift: float = 1.0  # t -> s t / (1 + (s - 1) t): s > 1 moves levels towards noise
    # chance that an example's media take one noise level per latent time step (video and
    # audio of a step share it; drawn independently, as diffusion forcing trains) instead of
    # one level for the whole clip: generating a step then pays to read its cleaner neighbours
    step_noise: float = 0.0
    # Attention inside a media segment. "bidirectional": every token sees the whole clip.
    # "causal": the tokens of latent time step i (its video patches and its audio latents)
    # see each other, every earlier step and the text before, never a later step; the sampler
    # then writes the clip step by step with the finished past in its KV cache.
    media_attention: str = "bidirectional"
    # chance that an example which generates media keeps its first c latent time steps
    # (c uniform in 1 .. t-1) of the generated modalities clean and unlossed, as a
    # frame-causal sampler's finished past is (continuation always does)
    clean_past: float = 0.0

    MEDIA_ATTENTION: ClassVar[tuple[str, ...]] = ("bidirectional", "causal")

    def __post_init__(self):
        if self.media_attention not in self.MEDIA_ATTENTION:
            raise ConfigError(f"sequence.media_attention must be one of "
                              f"{list(self.MEDIA_ATTENTION)}, got {self.media_attention!r}")
        if not 0 <= self.clean_past <= 1:
            raise ConfigError(f"sequence.clean_past must be in [0, 1], got {self.clean_past}")
        if self.seq_len < 0 or self.examples_per_row <= 0 or self.video_patch <= 0:
            raise ConfigError("sequence.seq_len must be >= 0, sequence.examples_per_row and "
                              "sequence.video_patch positive")
        if self.max_text_len < 3:
            raise ConfigError(f"sequence.max_text_len must be >= 3 (bos, a word, eos), got "
                              f"{self.max_text_len}")
        weights = self.task_weights
        if min(weights.values()) < 0 or sum(weights.values()) <= 0:
            raise ConfigError(f"sequence task weights must be >= 0 and not all 0, got {weights}")
        if not 0 <= self.caption_dropout <= 1:
            raise ConfigError(f"sequence.caption_dropout must be in [0, 1], got "
                              f"{self.caption_dropout}")
        if not 0 <= self.step_noise <= 1:
            raise ConfigError(f"sequence.step_noise must be in [0, 1], got {self.step_noise}")
        if self.noise_std <= 0 or self.noise_shift <= 0:
            raise ConfigError("sequence.noise_std and sequence.noise_shift must be positive")

    @property
    def causal(self) -> bool:
        """Whether media segments are frame-causal (`media_attention="causal"`)."""
        return self.media_attention == "causal"

    @property
    def task_weights(self) -> dict[str, float]:
        return {task: getattr(self, task) for task in TASKS}


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the training losses (docs/design.md, "Losses")."""

    text_weight: float = 1.0  # caption cross-entropy
    video_weight: float = 1.0  # rectified-flow MSE on video tokens
    audio_weight: float = 1.0  # rectified-flow MSE on audio tokens
    z_loss: float = 1e-4  # weight of log(Z)^2 of the LM head's softmax (0 = off)

    def __post_init__(self):
        if min(self.text_weight, self.video_weight, self.audio_weight, self.z_loss) < 0:
            raise ConfigError("loss weights must be >= 0")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh and multi-host setup (docs/design.md, "Sharding and scale")."""

    data: int = -1  # data-parallel axis size (-1 = the devices left over)
    fsdp: int = 1  # parameter- and optimizer-sharding axis size (-1 = the rest)
    tensor: int = 1  # tensor-parallel axis size (-1 = the rest)
    # jax.distributed: coordinator "host:port" (empty = single process, or the cluster's
    # standard environment variables when num_processes is -1)
    coordinator_address: str = ""
    num_processes: int = 1  # processes in the job (-1 = detect from the environment)
    process_id: int = -1  # this process's index (-1 = from the environment)

    def __post_init__(self):
        sizes = (self.data, self.fsdp, self.tensor)
        if any(s == 0 or s < -1 for s in sizes) or sizes.count(-1) > 1:
            raise ConfigError(f"mesh sizes must be positive, with at most one -1 (the rest); "
                              f"got data={self.data} fsdp={self.fsdp} tensor={self.tensor}")
        if self.num_processes == 0 or self.num_processes < -1:
            raise ConfigError("mesh.num_processes must be positive or -1 (from the environment)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """`o1 train`: optimization, evaluation, checkpoints and logging of the transformer."""

    steps: int = 10_000  # optimizer steps
    batch_size: int = 32  # rows per step, over all processes
    grad_accum: int = 1  # micro-batches per step (batch_size must divide by it)
    learning_rate: float = 3e-4  # peak learning rate
    # adamw, or muon: orthogonalized momentum on the decoder blocks' weight matrices (scaled
    # to AdamW's update RMS, so the same learning rate applies) and AdamW on the rest
    optimizer: str = "adamw"
    warmup_steps: int = 200  # linear warm-up, then cosine decay to min_lr_ratio * peak
    min_lr_ratio: float = 0.1  # final learning rate as a fraction of the peak
    weight_decay: float = 0.1  # AdamW decoupled weight decay (weight matrices only)
    b1: float = 0.9  # AdamW beta1
    b2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # global gradient-norm clip
    log_every: int = 10  # steps between metric writes
    eval_every: int = 500  # steps between validation passes (and at the end)
    eval_batches: int = 4  # validation batches per task
    checkpoint_every: int = 500  # steps between checkpoints (and at the end, and on SIGTERM)
    keep_checkpoints: int = 3  # committed checkpoints kept
    seed: int = 0  # parameter init, task sampling and noise
    peak_flops: float = 0.0  # FLOP/s per device for MFU (0 = datasheet on GPU, measured on CPU)

    def __post_init__(self):
        _check_positive("train", self, ("steps", "batch_size", "grad_accum", "log_every",
                                        "eval_every", "eval_batches", "checkpoint_every",
                                        "keep_checkpoints"))
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"train.batch_size ({self.batch_size}) must be a multiple of train.grad_accum "
                f"({self.grad_accum}); try train.batch_size="
                f"{-(-self.batch_size // self.grad_accum) * self.grad_accum}")
        if not self.learning_rate > 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("train.learning_rate must be > 0 and train.min_lr_ratio in [0, 1]")
        if self.optimizer not in ("adamw", "muon"):
            raise ConfigError(f"train.optimizer must be adamw or muon, got {self.optimizer!r}")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Sampling defaults: what `o1 generate`, `caption`, `dub`, `animate`, `extend`, `o1 eval`
    and the studio use for every option not given, and the defaults of `o1.sampler`'s
    FlowOptions and TextOptions. `problem` is the one check of each option, for all of them."""

    steps: int = 12  # denoising steps from t = 1 to 0 (12: faster than playback on 2 CPU cores)
    solver: str = "euler"  # ODE solver: euler (one model call a step) or heun (two)
    # t -> s t / (1 + (s - 1) t) on the step grid; s > 1 spends more steps near t = 1 (coarse
    # structure), s < 1 near t = 0 (detail)
    shift: float = 1.0
    cfg_video: float = 3.0  # classifier-free guidance scale on video tokens (1 = none)
    cfg_audio: float = 3.0  # classifier-free guidance scale on audio tokens (1 = none)
    # frame-causal sampling: the noise level a finished latent step is re-noised to before it
    # joins the KV cache as the next steps' past (0 = clean, as generated)
    past_noise: float = 0.0
    seed: int = 0  # seed of the initial noise and of caption sampling
    # a stream's windows after the first each add this much picture and sound (rounded to
    # whole latent steps, at least one); it is also how soon a changed prompt shows
    stream_seconds: float = 1.0
    # given latent steps of the window where a stream's prompt changes (fewer: the new prompt
    # wins sooner over the picture so far): 1 switched colour in 0.70 of 20 trials, as many as
    # dropping the past, against 0.65 with the usual 5 (docs/results.md)
    stream_switch_steps: int = 1
    max_tokens: int = 32  # longest caption `o1 caption` writes, in tokens (eos included)
    temperature: float = 0.0  # caption sampling temperature (0 = greedy)
    top_p: float = 1.0  # nucleus mass of caption sampling (1 = every id)
    # partial captions kept while decoding: 1 writes each id at once (greedy, or sampled at
    # a temperature); more is beam search, which decodes at temperature 0 only
    beams: int = 1
    # What one request may cost, the same from the CLI, the Python API and the studio:
    max_steps: int = 100  # most denoising steps
    max_guidance: float = 20.0  # largest guidance scale
    max_seconds: float = 60.0  # longest video a request reads or writes
    max_prompt_chars: int = 1000  # longest prompt in characters, refused before tokenizing
    max_beams: int = 16  # most partial captions one caption keeps (`beams`)

    SOLVERS: ClassVar[tuple[str, ...]] = ("euler", "heun")
    MAX_SEED: ClassVar[int] = 2**31 - 1  # seeds are int32 (the studio's seed box holds them)

    def __post_init__(self):
        names = [f.name for f in dataclasses.fields(self)]
        # The limits first: the options are checked against them.
        for name in sorted(names, key=lambda n: not n.startswith("max_")):
            problem = self.problem(name, getattr(self, name))
            if problem:
                raise ConfigError(f"sample.{name} {problem}")
        problem = self.decoding_problem(self.beams, self.temperature)
        if problem:
            raise ConfigError(f"sample.beams {problem}")

    @staticmethod
    def decoding_problem(beams: int, temperature: float) -> str | None:
        """What is wrong with decoding captions with `beams` at `temperature`, as the rest of
        a sentence that starts with "beams"; None when they go together."""
        if beams > 1 and temperature > 0:
            return (f"{beams} is beam search, which decodes at temperature 0, got temperature "
                    f"{temperature:g}; ask for 1 beam to sample at a temperature")
        return None

    def problem(self, name: str, value: Any) -> str | None:
        """What is wrong with `value` as the sampling option `name`, as the rest of a sentence
        that starts with the name ("must be ..., got ..."), within this section's limits;
        None when it is fine."""
        number = (isinstance(value, numbers.Real) and not isinstance(value, bool)
                  and math.isfinite(value))
        whole = number and value == int(value)
        if name == "solver":
            ok, want = value in self.SOLVERS, f"one of {', '.join(self.SOLVERS)}"
        elif name == "steps":
            ok = whole and 1 <= value <= self.max_steps
            want = f"a whole number from 1 to {self.max_steps} (sample.max_steps)"
        elif name == "beams":
            ok = whole and 1 <= value <= self.max_beams
            want = f"a whole number from 1 to {self.max_beams} (sample.max_beams)"
        elif name in ("max_tokens", "max_steps", "max_prompt_chars", "stream_switch_steps",
                      "max_beams"):
            ok, want = whole and value >= 1, ">= 1 (a whole number)"
        elif name == "seed":
            ok = whole and 0 <= value <= self.MAX_SEED
            want = f"a whole number from 0 to {self.MAX_SEED}"
        elif name in ("shift", "max_seconds", "stream_seconds"):
            ok, want = number and value > 0, "a finite number > 0"
        elif name in ("cfg_video", "cfg_audio"):
            ok = number and 0 <= value <= self.max_guidance
            want = f"from 0 to {self.max_guidance:g} (1 = no guidance; sample.max_guidance)"
        elif name in ("temperature", "max_guidance"):
            ok, want = number and value >= 0, "a finite number >= 0"
        elif name == "top_p":
            ok, want = number and 0 < value <= 1, "in (0, 1]"
        elif name == "past_noise":
            ok, want = number and 0 <= value < 1, "in [0, 1)"
        else:
            raise KeyError(f"{name!r} is not a sampling option; they are "
                           f"{[f.name for f in dataclasses.fields(self)]}")
        shown = repr(value) if isinstance(value, str) else value
        return None if ok else f"must be {want}, got {shown}"


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs; `config.json` in a workdir is this, serialized."""

    name: str = "custom"  # the named config this started from
    seed: int = 0  # seed of dataset generation and training
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    video_vae: VideoVAEConfig = dataclasses.field(default_factory=VideoVAEConfig)
    audio: AudioConfig = dataclasses.field(default_factory=AudioConfig)
    loader: LoaderConfig = dataclasses.field(default_factory=LoaderConfig)
    tokenizer_train: TokenizerTrainConfig = dataclasses.field(
        default_factory=TokenizerTrainConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    sequence: SequenceConfig = dataclasses.field(default_factory=SequenceConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    sample: SampleConfig = dataclasses.field(default_factory=SampleConfig)

    def __post_init__(self):
        self._check_geometry()
        weights = self.data.language_weights
        if weights and len(weights) != len(self.text.languages):
            raise ConfigError(
                f"data.language_weights has {len(weights)} weights for the "
                f"{len(self.text.languages)} text.languages {list(self.text.languages)}; give "
                f"one weight a language, or none for equal weights")

    @property
    def language_p(self) -> dict[str, float]:
        """How often AV-Shapes captions a clip in each of `text.languages` (sums to 1)."""
        w = self.data.language_weights or (1.0,) * len(self.text.languages)
        return {lang: x / sum(w) for lang, x in zip(self.text.languages, w, strict=True)}

    @property
    def num_frames(self) -> int:
        """T = 1 + t_down * n frames, n chosen so the clip lasts about `data.seconds`."""
        t_down = self.video_vae.t_down
        return 1 + t_down * max(1, round(self.data.seconds * self.data.fps / t_down))

    @property
    def num_samples(self) -> int:
        """Audio samples of a clip: the T / fps seconds its frames span."""
        return self.num_frames * self.data.samples_per_frame

    @property
    def num_video_latents(self) -> int:
        """Latent frames of a clip: the first frame alone, then one per t_down frames."""
        return 1 + (self.num_frames - 1) // self.video_vae.t_down

    @property
    def num_mel_frames(self) -> int:
        """Mel frames of a clip: one per `hop` samples (the last one zero-padded)."""
        return -(-self.num_samples // self.audio.hop)

    @property
    def num_audio_latents(self) -> int:
        """Audio latents of a clip: one per `a_down` mel frames (the last one padded)."""
        return -(-self.num_mel_frames // self.audio.a_down)

    @property
    def latent_ratio(self) -> int:
        """k: audio latents per video latent frame."""
        return int(self._ratio())

    @property
    def latent_grid(self) -> tuple[int, int]:
        """(h, w): the video latent grid of a frame."""
        return (self.data.height // self.video_vae.s_down, self.data.width // self.video_vae.s_down)

    @property
    def token_grid(self) -> tuple[int, int]:
        """(rows, columns) of video tokens per latent frame: the latent grid cut in p x p."""
        h, w = self.latent_grid
        return (h // self.sequence.video_patch, w // self.sequence.video_patch)

    @property
    def video_token_dim(self) -> int:
        """Features of one video token: a p x p patch of C latent channels."""
        return self.sequence.video_patch ** 2 * self.video_vae.channels

    @property
    def media_dim(self) -> int:
        """Width of the media feature array, shared by video and audio tokens (zero-padded)."""
        return max(self.video_token_dim, self.audio.channels)

    @property
    def num_media_tokens(self) -> int:
        """Tokens of one clip's media segment: video patches plus audio latents."""
        rows, cols = self.token_grid
        return self.num_video_latents * rows * cols + self.num_audio_latents

    @property
    def max_example_len(self) -> int:
        """Longest example of any task: caption, a media marker on each side, the media."""
        return self.num_media_tokens + self.sequence.max_text_len + 2

    @property
    def seq_len(self) -> int:
        """Tokens per training row."""
        return self.sequence.seq_len or self.sequence.examples_per_row * self.max_example_len

    def _ratio(self) -> Fraction:
        d, a = self.data, self.audio
        return Fraction(d.sample_rate * self.video_vae.t_down, a.hop * a.a_down * d.fps)

    def _check_geometry(self):
        d, v = self.data, self.video_vae
        if d.height % v.s_down or d.width % v.s_down:
            raise ConfigError(
                f"data.height x data.width ({d.height}x{d.width}) must be divisible by "
                f"video_vae.s_down ({v.s_down}); try video_vae.s_down in "
                f"{[s for s in (1, 2, 4, 8, 16) if d.height % s == 0 and d.width % s == 0]}"
            )
        h, w = self.latent_grid
        p = self.sequence.video_patch
        if h % p or w % p:
            raise ConfigError(
                f"the video latent grid {h}x{w} must be divisible by sequence.video_patch ({p}); "
                f"try sequence.video_patch in {[q for q in range(1, 9) if h % q == w % q == 0]}")
        if self.sequence.seq_len and self.sequence.seq_len < (
                self.sequence.examples_per_row * self.max_example_len):
            raise ConfigError(
                f"sequence.seq_len ({self.sequence.seq_len}) cannot hold "
                f"{self.sequence.examples_per_row} examples of up to {self.max_example_len} "
                f"tokens; set sequence.seq_len="
                f"{self.sequence.examples_per_row * self.max_example_len} (or 0 for automatic)")
        if self._ratio().denominator != 1:
            self._raise_ratio()

    def _raise_ratio(self):
        d, v, a = self.data, self.video_vae, self.audio
        ratio = self._ratio()
        valid_hops = [h for h in range(1, 4 * a.hop + 1)
                      if Fraction(d.sample_rate * v.t_down, h * a.a_down * d.fps).denominator == 1]
        near_hops = sorted(valid_hops, key=lambda h: (abs(h - a.hop), h))[:2]
        valid_down = [x for x in range(1, 33)
                      if Fraction(d.sample_rate * v.t_down, a.hop * x * d.fps).denominator == 1]
        near_down = sorted(valid_down, key=lambda x: (abs(x - a.a_down), x))[:2]
        hints = [f"audio.hop={h} (k={ratio * a.hop // h})" for h in sorted(near_hops)]
        hints += [f"audio.a_down={x}" for x in sorted(near_down)]
        raise ConfigError(
            f"audio latent rate sample_rate/(hop*a_down) = {d.sample_rate}/({a.hop}*{a.a_down}) "
            f"= {float(Fraction(d.sample_rate, a.hop * a.a_down)):.4g}/s is not an integer "
            f"multiple of the video latent rate fps/t_down = {d.fps}/{v.t_down} = "
            f"{d.fps / v.t_down:.4g}/s (ratio {float(ratio):.4g}); nearest valid settings: "
            + ", ".join(hints)
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


T = TypeVar("T")


def _dotted_keys(cls: type, prefix: str = "") -> Iterator[str]:
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not
                                    dataclasses.MISSING else None):
            yield from _dotted_keys(f.default_factory, key + ".")  # type: ignore[arg-type]
        else:
            yield key


def valid_keys() -> list[str]:
    """Every dotted key an override may set."""
    return list(_dotted_keys(Config))


def apply_overrides(config: T, overrides: Sequence[str]) -> T:
    """Returns `config` with `key=value` overrides applied and every section re-validated.

    Raises:
      ConfigError: an override is malformed, names an unknown key (the message names the
        closest valid key), has a value of the wrong type, or makes the config invalid.
    """
    keys = valid_keys()
    for item in overrides:
        key, eq, _ = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. data.fps=8")
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.0)
            raise ConfigError(f"unknown config key {key!r}; did you mean {close[0]!r}?")
    base = OmegaConf.structured(config)
    OmegaConf.set_readonly(base, False)
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        cause = str(e).splitlines()[0]
        raise ConfigError(f"bad value for {key}: {cause}") from None


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuilds a Config from `dataclasses.asdict` output (e.g. a workdir's config.json).

    Keys missing from `data` (a file written before a section existed) take the values of the
    named config `data["name"]` when there is one, else the dataclass defaults; keys the
    dataclasses no longer have (a file written before a key was removed) are ignored.
    """
    from o1 import configs  # configs imports this module

    name = data.get("name")
    base = configs.get(name) if name in configs.NAMES else Config
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(base),  # type: ignore
                                               _known(Config, data)))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """`data` without the keys that no field of the dataclass `cls` (or its sections) has."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        section = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        out[f.name] = (_known(section, data[f.name])  # type: ignore[arg-type]
                       if dataclasses.is_dataclass(section) and isinstance(data[f.name], dict)
                       else data[f.name])
    return out


def load(path: str | os.PathLike) -> Config:
    """The Config saved as JSON at `path` (see `from_dict`)."""
    return from_dict(json.loads(pathlib.Path(path).read_text()))


def differences(old: Config, new: Config, sections: Sequence[str]) -> list[str]:
    """'key: old -> new' for every dotted key under the top-level `sections` that differs."""
    def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = value
        return out

    a, b = flat(dataclasses.asdict(old)), flat(dataclasses.asdict(new))
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a
            if k.split(".")[0] in sections and a[k] != b[k]]
