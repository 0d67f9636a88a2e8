"""Everything a trained workdir does for a user: text -> video with sound, captions, dubbing,
video for a sound, image animation and continuation.

    pipe = Pipeline("runs/quickstart")
    clip = pipe.generate("a fast red circle bounces", seconds=2.0)
    clip.write("clip.mp4")
    print(pipe.caption(read_clip("clip.mp4", pipe.config)))

One model clip is the config's T frames (`data.seconds`, e.g. 33 frames = 2.06 s). Longer
outputs are made window by window with the continuation task: the last
`1 + t_down (c - 1)` frames (and their sound) of what exists are re-encoded as the clean
first c latent steps of the next window, and the frames after them are appended. A dubbed
video longer than one clip is dubbed in consecutive windows of T frames, and a sound longer
than one clip is given its video the same way.

Inputs are checked before any work: `RequestError` names the bad value and what to do.
Outputs are at the model's frame size, frame rate and sample rate.

Axes: T frames, H W pixels, N samples, M media tokens.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
from flax import nnx

from o1 import checkpoint, media
from o1.config import Config, ConfigError
from o1.media import Clip
from o1.model import Model
from o1.sampler import (
    FlowOptions,
    MediaRequest,
    RequestError,
    Sampler,
    TextOptions,
    buckets,
    denoising_passes,
    within,
)
from o1.serve.checks import (
    Checks,
    check_audio_file,
    check_video_file,
    committed_steps,
    load_config,
)
from o1.serve.stream import Stream
from o1.tokenizers import bundle

__all__ = ["Pipeline", "RequestError", "check_audio_file", "check_video_file",
           "committed_steps", "load_config", "load_model", "read_audio", "read_clip",
           "read_image", "format_profile", "step_times"]

CONTEXT_FRACTION = 0.5  # share of a window's latent steps kept as context when extending

# (denoising passes done, passes in the whole request): a pass is one denoising step, or,
# frame-causal, one latent time step (`o1.sampler.denoising_passes`)
Progress = Callable[[int, int], None]


def load_model(workdir: str | os.PathLike, step: int | None = None) -> tuple[Config, Model, int]:
    """The transformer of `workdir` at `step` (default: the latest), on the default device."""
    config = load_config(workdir)
    workdir = pathlib.Path(workdir)
    step = _step(workdir, step)
    with nnx.use_eager_sharding(False):
        model = Model(config, nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {"params": jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), params)}
    state, step = checkpoint.restore(workdir / "checkpoints", target, step)
    return config, nnx.merge(graphdef, state["params"]), step


def _step(workdir: pathlib.Path, step: int | None) -> int:
    """`step` if `workdir` has it committed (default: its latest), or RequestError."""
    steps = committed_steps(workdir)
    if step is not None and step not in steps:
        raise RequestError(f"{workdir} has no checkpoint {step}; its committed checkpoints are "
                           f"{', '.join(map(str, steps))}", "checkpoint")
    return steps[-1] if step is None else step


def read_clip(path: str | os.PathLike, config: Config, require_audio: bool = False,
              seconds: float | None = None) -> Clip:
    """A video file brought to the model's frame rate, frame size and sample rate (silent
    audio when it has none and `require_audio` is False); only its first `seconds` when given.
    See `check_video_file` for the checks to make before."""
    d = config.data
    clip = media.read_media(path, fps=d.fps, size=(d.height, d.width),
                            sample_rate=d.sample_rate, require_audio=require_audio,
                            seconds=seconds)
    audio = clip.audio if clip.audio is not None else np.zeros(0, np.float32)
    n = len(clip.frames) * d.samples_per_frame
    audio = np.pad(audio[:n], (0, max(0, n - len(audio))))
    return Clip(clip.frames, float(d.fps), audio.astype(np.float32), d.sample_rate)


def read_image(path: str | os.PathLike, config: Config) -> np.ndarray:
    """An image file (or a video's first frame) as uint8 [H, W, 3] at the model's size."""
    d = config.data
    # A video gives its first frame; nothing after it is decoded.
    return media.read_media(path, size=(d.height, d.width), require_audio=False,
                            seconds=1e-3).frames[0]


def read_audio(path: str | os.PathLike, config: Config, seconds: float | None = None) -> Clip:
    """The sound of a file as a Clip without frames, for `Pipeline.visualize`: float32 [N]
    mono audio at the model's sample rate from its first sample (`media.read_audio`); only its
    first `seconds` when given. See `check_audio_file` for the checks to make before."""
    d = config.data
    audio = media.read_audio(path, d.sample_rate, seconds)
    return Clip(np.zeros((0, d.height, d.width, 3), np.uint8), float(d.fps), audio,
                d.sample_rate)


class Pipeline:
    """The tokenizers and transformer of a workdir, ready to sample.

    Every request is checked (`self.checks`, from the config and text tokenizer alone) before
    any work; the model and the media tokenizers load at the first request that passes, or at
    `load()`.

    Args:
      workdir: a run directory with trained tokenizers and transformer checkpoints.
      step: the checkpoint to load (default: the latest).
      longest_prefix_only: pad every prompt to the longest prefix, so one compiled program
        serves all prompt lengths (a server's warm-up), instead of one per length bucket.
      limits: `sample` limits to use instead of the config's (e.g. {"max_seconds": 20}).
    """

    def __init__(self, workdir: str | os.PathLike, step: int | None = None,
                 longest_prefix_only: bool = False, limits: dict | None = None):
        self.workdir = pathlib.Path(workdir)
        config = load_config(workdir)
        if limits:
            try:
                config = dataclasses.replace(config, sample=dataclasses.replace(
                    config.sample, **limits))
            except ConfigError as e:
                raise RequestError(str(e)) from None
        self.checks = Checks(workdir, config)
        self.config = self.checks.config
        self.step = _step(self.workdir, step)
        self._longest_prefix_only = longest_prefix_only
        self._sampler: Sampler | None = None
        self._tokenizers: bundle.Tokenizers | None = None
        self.truncate_prompts = False  # take prompts as reference captions (Checks.prompt)
        c = self.config
        self.fps, self.sample_rate = c.data.fps, c.data.sample_rate
        self.clip_frames = c.num_frames
        self.spf = c.data.samples_per_frame
        self.context_steps = max(1, min(c.num_video_latents - 1,
                                        round(c.num_video_latents * CONTEXT_FRACTION)))

    @property
    def loaded(self) -> bool:
        """Whether the model and media tokenizers are in memory."""
        return self._sampler is not None

    def load(self) -> Pipeline:
        """Loads the model and the media tokenizers (once)."""
        if self._sampler is None:
            config, model, self.step = load_model(self.workdir, self.step)
            try:
                self._tokenizers = bundle.Tokenizers(self.workdir)
            except FileNotFoundError as e:
                raise RequestError(str(e)) from None
            self._sampler = Sampler(config, model, buckets(config)[-1:]
                                    if self._longest_prefix_only else None,
                                    text_vocab=self._tokenizers.text.vocab_size)
        return self

    @property
    def sampler(self) -> Sampler:
        return self.load()._sampler

    @property
    def tokenizers(self) -> bundle.Tokenizers:
        return self.load()._tokenizers

    @property
    def clip_seconds(self) -> float:
        """Seconds of one model clip."""
        return self.clip_frames / self.fps

    # ------------------------------------------------------------------------------------------
    # Checks
    # ------------------------------------------------------------------------------------------

    def prompt_ids(self, prompt: str | None, required: bool = True) -> np.ndarray | None:
        """Caption ids (bos .. eos) of a prompt, or RequestError (`Checks.prompt`)."""
        ids = self.checks.prompt(prompt, required, reference=self.truncate_prompts)
        if ids is not None and len(ids) > self.config.sequence.max_text_len:
            return self.sampler.builder.cut_caption(ids)  # as training cuts captions
        return ids

    def check_seconds(self, seconds: float, field: str = "seconds") -> int:
        """Frames of `seconds` of output, or RequestError."""
        return self.checks.seconds(seconds, field)

    def _sampling(self, flow: FlowOptions | None, seed: int | None) -> tuple[FlowOptions, int]:
        """`flow` (within the config's limits) and `seed`, the config's `sample` section
        standing in for those not given."""
        if flow is None:
            flow = self.checks.flow()
        within(self.config.sample, flow)
        return flow, self.checks.seed(seed)

    def _passes(self, flow: FlowOptions, windows: int = 1, have: int | None = None,
                want: int = 0) -> int:
        """Progress ticks (`o1.sampler.denoising_passes`) of `windows` whole windows, plus,
        when `have` is given, of the continuation windows that take `have` frames to `want`."""
        ticks = denoising_passes(self.config, flow) * windows
        if have is not None:
            ticks += sum(denoising_passes(self.config, flow, steps)
                         for steps in self._continuations(have, want))
        return ticks

    def _media(self, clip: Clip, field: str) -> None:
        """RequestError for a clip this pipeline cannot take (empty, or too long)."""
        if not isinstance(clip, Clip) or not len(clip.frames):
            raise RequestError("must be a Clip with at least one frame (see read_clip)", field)
        self.check_seconds(len(clip.frames) / self.fps, field)

    def _sound(self, sound: Clip, seconds: float | None) -> np.ndarray:
        """The audio of `sound` at the model's sample rate, its first `seconds` (default: all
        of it) cut or padded with silence to whole frames; or RequestError (`Checks.sound`)."""
        if not isinstance(sound, Clip) or sound.audio is None or not sound.sample_rate:
            raise RequestError("must be a Clip with audio (see read_audio)", "sound")
        audio = np.asarray(sound.audio, np.float32)
        if audio.ndim != 1 or not np.isfinite(audio).all():
            raise RequestError(f"audio must be finite mono samples [N], got shape "
                               f"{audio.shape} (read_audio downmixes)", "sound")
        audio = media.resample(audio, sound.sample_rate, self.sample_rate)
        n = self.checks.sound(audio, seconds) * self.spf
        return np.pad(audio[:n], (0, max(0, n - len(audio))))

    # ------------------------------------------------------------------------------------------
    # Tasks: options not given (None) come from the config's `sample` section.
    # ------------------------------------------------------------------------------------------

    def generate(self, prompt: str, seconds: float | None = None,
                 flow: FlowOptions | None = None, seed: int | None = None,
                 progress: Progress | None = None) -> Clip:
        """Text -> video with sound, `seconds` long (default: one model clip).

        `progress(done, total)` is called after every denoising step of every window."""
        flow, seed = self._sampling(flow, seed)
        ids = self.prompt_ids(prompt)
        frames = self.check_seconds(seconds if seconds is not None else self.clip_seconds)
        timings: dict[str, float] = {}
        ticks = _Ticks(self._passes(flow, 1, self.clip_frames, frames), progress)
        video, audio = self._window(ids, None, None, "text_to_av", flow, seed, timings,
                                    ticks=ticks)
        return self._extend_to(Clip(video, self.fps, audio, self.sample_rate, timings), frames,
                               ids, flow, seed, ticks)

    def stream(self, prompt: str | Sequence[tuple[float, str]], seconds: float | None = None,
               flow: FlowOptions | None = None, seed: int | None = None,
               hop: int | None = None) -> Stream:
        """Text -> video with sound as a stream of latent steps (`o1.serve.stream`), for
        `seconds` (within sample.max_seconds) or, when None, until `Stream.stop`.

        `prompt` is one prompt, or a schedule [(seconds, prompt), ...] starting at 0; the
        stream's `set_prompt` changes it while it runs. `hop` latent steps are added per
        window after the first (default: sample.stream_seconds of them). Everything is
        checked here, before the model loads."""
        flow, seed = self._sampling(flow, seed)
        schedule = [(0.0, prompt)] if isinstance(prompt, str) or prompt is None else list(prompt)
        return Stream(self, schedule, seconds, flow, seed, hop)

    def caption(self, clip: Clip, text: TextOptions | None = None, seed: int | None = None,
                language: str | None = None) -> str:
        """Video (and its sound) -> caption, from the clip's first model-clip of frames (at
        most sequence.max_text_len tokens, as in training, unless `text` says otherwise), in
        `language` (one of `text.languages`; by default the first)."""
        text = text or self.checks.caption_options()
        within(self.config.sample, text)
        seed = self.checks.seed(seed)
        prefix = self._caption_prefix(clip, language)
        ids = self.sampler.decode_text([prefix], text, jax.random.key(seed))[0]
        return self.tokenizers.text.decode(ids).strip()

    def read_captions(self, clip: Clip, captions: dict[str, str]
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """How the model reads each caption of `clip` (teacher forcing), by language (one of
        `text.languages`): the caption's ids after bos and its language tag, eos included (cut
        to sequence.max_text_len as in training), and float32 [len(ids), V] log-probabilities,
        row j that of ids[j] given the clip and the ids before it (`Sampler.read_text`). The
        clip is encoded once for all of them."""
        latents = self._caption_latents(clip)
        out = {}
        for language, caption in captions.items():
            prefix = self.sampler.caption_prefix(*latents, self.checks.language_tag(language))
            ids = self.tokenizers.text.encode(caption, language=language)
            ids = self.sampler.builder.cut_caption(np.asarray(ids, np.int32))
            ids = ids[1 + bool(self.tokenizers.text.languages):]
            out[language] = ids, self.sampler.read_text(prefix, ids)
        return out

    def _caption_prefix(self, clip: Clip, language: str | None) -> dict:
        """The captioning prefix of `clip`'s first model-clip, asking for `language`."""
        tag = self.checks.language_tag(language)
        latents = self._caption_latents(clip)  # checks the clip before the sampler loads
        return self.sampler.caption_prefix(*latents, tag)

    def _caption_latents(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        """The video and audio latents of `clip`'s first model-clip."""
        if not isinstance(clip, Clip) or not len(clip.frames):
            raise RequestError("must be a Clip with at least one frame (see read_clip)", "video")
        frames, audio = self._fit(clip.frames, clip.audio)
        return (self.tokenizers.encode_video(frames[None])[0],
                self.tokenizers.encode_audio(audio[None])[0])

    def dub(self, clip: Clip, prompt: str | None = None,
            flow: FlowOptions | None = None, seed: int | None = None,
            progress: Progress | None = None) -> Clip:
        """Silent video -> the same video with generated sound, in windows of one clip."""
        flow, seed = self._sampling(flow, seed)
        ids = self.prompt_ids(prompt, required=False)
        self._media(clip, "video")
        timings: dict[str, float] = {}
        waves = []
        starts = range(0, len(clip.frames), self.clip_frames)
        ticks = _Ticks(self._passes(flow, len(starts)), progress)
        for w, start in enumerate(starts):
            window, _ = self._fit(clip.frames[start:start + self.clip_frames], None)
            _, audio = self._window(ids, window, None, "video_to_audio", flow, seed + w,
                                    timings, decode_video=False, ticks=ticks)
            waves.append(audio)
        audio = np.concatenate(waves)[:len(clip.frames) * self.spf]
        return Clip(clip.frames, self.fps, audio, self.sample_rate, timings)

    def visualize(self, sound: Clip, prompt: str | None = None, seconds: float | None = None,
                  flow: FlowOptions | None = None, seed: int | None = None,
                  progress: Progress | None = None) -> Clip:
        """Sound -> a video made for it, with the sound as its audio, in windows of one clip.

        `sound` is a Clip whose audio (mono float [N] at its `sample_rate`) is the sound:
        `read_audio` gives one from an audio file, `read_clip` from a video with sound, whose
        frames are not used. The sound is brought to the model's sample rate and taken whole
        (to the nearest frame: cut or padded with silence by under half a frame), or its first
        `seconds`. A silent sound is refused: there is nothing to make a video for."""
        flow, seed = self._sampling(flow, seed)
        ids = self.prompt_ids(prompt, required=False)
        audio = self._sound(sound, seconds)
        frames = len(audio) // self.spf
        timings: dict[str, float] = {}
        videos = []
        starts = range(0, frames, self.clip_frames)
        ticks = _Ticks(self._passes(flow, len(starts)), progress)
        for w, start in enumerate(starts):
            window = audio[start * self.spf:(start + self.clip_frames) * self.spf]
            video, _ = self._window(ids, None, window, "audio_to_video", flow, seed + w,
                                    timings, decode_audio=False, ticks=ticks)
            videos.append(video)
        return Clip(np.concatenate(videos)[:frames], self.fps, audio, self.sample_rate, timings)

    def animate(self, image: np.ndarray, prompt: str, seconds: float | None = None,
                flow: FlowOptions | None = None, seed: int | None = None,
                progress: Progress | None = None) -> Clip:
        """First frame (uint8 [H, W, 3]) + prompt -> video with sound starting on it."""
        flow, seed = self._sampling(flow, seed)
        ids = self.prompt_ids(prompt)
        frames = self.check_seconds(seconds if seconds is not None else self.clip_seconds)
        d = self.config.data
        if getattr(image, "shape", None) != (d.height, d.width, 3):
            raise RequestError(f"is {getattr(image, 'shape', type(image).__name__)}; this model "
                               f"needs ({d.height}, {d.width}, 3) (use read_image)", "image")
        timings: dict[str, float] = {}
        ticks = _Ticks(self._passes(flow, 1, self.clip_frames, frames), progress)
        video, audio = self._window(ids, image[None], None, "image_to_video", flow, seed,
                                    timings, ticks=ticks)
        return self._extend_to(Clip(video, self.fps, audio, self.sample_rate, timings), frames,
                               ids, flow, seed, ticks)

    def extend(self, clip: Clip, seconds: float, prompt: str | None = None,
               flow: FlowOptions | None = None, seed: int | None = None,
               progress: Progress | None = None) -> Clip:
        """A clip continued by `seconds` of new video and sound."""
        flow, seed = self._sampling(flow, seed)
        ids = self.prompt_ids(prompt, required=False)
        added = self.check_seconds(seconds)
        self._media(clip, "video")
        total = len(clip.frames) / self.fps + seconds
        if total > self.config.sample.max_seconds:
            raise RequestError(f"would make the clip {total:.2f} s long; clips up to "
                               f"{self.config.sample.max_seconds:g} s are made here "
                               f"(sample.max_seconds); add less", "seconds")
        audio = clip.audio if clip.audio is not None else np.zeros(
            len(clip.frames) * self.spf, np.float32)
        start = Clip(clip.frames, self.fps, audio, self.sample_rate)
        want = len(clip.frames) + added
        ticks = _Ticks(self._passes(flow, 0, len(clip.frames), want), progress)
        return self._extend_to(start, want, ids, flow, seed, ticks)

    # ------------------------------------------------------------------------------------------
    # Windows
    # ------------------------------------------------------------------------------------------

    def _fit(self, frames: np.ndarray, audio: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Frames and audio cut or padded (last frame repeated, silence) to one model clip."""
        frames = frames[:self.clip_frames]
        frames = np.concatenate([frames, np.repeat(frames[-1:], self.clip_frames - len(frames),
                                                   0)])
        return frames, self._fit_audio(audio)

    def _fit_audio(self, audio: np.ndarray | None) -> np.ndarray:
        """Audio cut or padded with silence to one model clip (silence when None)."""
        n = self.config.num_samples
        audio = np.zeros(n, np.float32) if audio is None else np.asarray(audio, np.float32)[:n]
        return np.pad(audio, (0, n - len(audio)))

    def _window(self, ids, frames, audio, task: str, flow: FlowOptions, seed: int,
                timings: dict[str, float], context_steps: int = 1, decode_video: bool = True,
                ticks: _Ticks | None = None, decode_audio: bool = True
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """One model clip of `task`; context from `frames` / `audio` (None = nothing given)."""
        c, tok = self.config, self.tokenizers
        video_z, audio_z = self.blank_latents()
        start = time.perf_counter()
        if frames is not None:
            video_z = tok.encode_video(self._fit(frames, None)[0][None])[0]
        if audio is not None:  # the sound is context (continuation, audio_to_video)
            audio_z = tok.encode_audio(self._fit_audio(audio)[None])[0]
        _add(timings, "encode", time.perf_counter() - start)
        request = MediaRequest(ids, video_z, audio_z,
                               self.sampler.builder.noised_mask(task, context_steps))
        clock = {"at": time.perf_counter()}

        def on_step(stage: str, i: int) -> None:
            now = time.perf_counter()
            _add(timings, "prefix" if stage == "prefix" else f"step_{i}", now - clock["at"])
            clock["at"] = now
            if ticks is not None and stage == "step":
                ticks.tick()

        feats = self.sampler.sample_media([request], flow, jax.random.key(seed),
                                          on_step=on_step)[0]
        video_z, audio_z = self.sampler.builder.unpack_media(feats)
        start = time.perf_counter()
        video = tok.decode_video(video_z[None])[0] if decode_video else None
        mel = tok.decode_mel(audio_z[None]) if decode_audio else None
        mid = time.perf_counter()
        wave = tok.vocoder(mel, c.num_samples)[0] if decode_audio else None
        _add(timings, "vae_decode", mid - start)
        _add(timings, "waveform", time.perf_counter() - mid)
        return video, wave

    def blank_latents(self) -> tuple[np.ndarray, np.ndarray]:
        """Zero latents of one model clip, video [t, h, w, C] and audio [a, Ca], to fill with
        the context of a request (what is generated is never read)."""
        c = self.config
        return (np.zeros((c.num_video_latents, *c.latent_grid, c.video_vae.channels),
                         np.float32),
                np.zeros((c.num_audio_latents, c.audio.channels), np.float32))

    def _context(self, have: int) -> tuple[int, int]:
        """(latent steps, frames) of context a continuation window takes from `have` frames."""
        steps = min(self.context_steps, 1 + (have - 1) // self.config.video_vae.t_down)
        return steps, 1 + self.config.video_vae.t_down * (steps - 1)

    def _continuations(self, have: int, want: int) -> Iterator[int]:
        """The context steps of each continuation window that takes a clip of `have` frames
        to `want` frames."""
        while have < want:
            steps, keep = self._context(have)
            yield steps
            have += self.clip_frames - keep

    def continuation_windows(self, have: int, want: int) -> int:
        """Continuation windows that take a clip of `have` frames to `want` frames."""
        return sum(1 for _ in self._continuations(have, want))

    def _extend_to(self, clip: Clip, frames: int, ids, flow: FlowOptions, seed: int,
                   ticks: _Ticks | None = None) -> Clip:
        """`clip` cut, or continued window by window, to `frames` frames."""
        window = 1
        while len(clip.frames) < frames:
            steps, keep = self._context(len(clip.frames))
            video, audio = self._window(
                ids, clip.frames[-keep:], clip.audio[-keep * self.spf:], "continuation", flow,
                seed + 1000 * window, clip.timings, context_steps=steps, ticks=ticks)
            clip.frames = np.concatenate([clip.frames, video[keep:]])
            clip.audio = np.concatenate([clip.audio, audio[keep * self.spf:]])
            window += 1
        clip.frames = clip.frames[:frames]
        clip.audio = clip.audio[:frames * self.spf]
        return clip


class _Ticks:
    """Counts denoising passes across the windows of one request and reports them."""

    def __init__(self, total: int, progress: Progress | None):
        self.done, self.total, self.progress = 0, total, progress

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _add(timings: dict[str, float], key: str, seconds: float) -> None:
    timings[key] = timings.get(key, 0.0) + seconds


def step_times(timings: dict[str, float]) -> list[float]:
    """Seconds of each denoising pass in a clip's `timings` (a denoising step, or, frame-causal,
    a latent time step with all its denoising steps), summed over its windows."""
    return [v for k, v in timings.items() if k.startswith("step_")]


def format_profile(timings: dict[str, float], seconds: float, wall: float) -> str:
    """A table of where a clip's `wall` seconds went (its `timings`, mux included once it is
    written) and the real-time factor of its `seconds`. A denoising pass is one denoising step,
    or, frame-causal, one latent time step with all its denoising steps."""
    steps = step_times(timings)
    rows = [("encode (context)", timings.get("encode", 0.0)),
            ("prefix (KV cache)", timings.get("prefix", 0.0))]
    rows += [(f"denoising pass {i + 1}", v) for i, v in enumerate(steps)]
    rows += [("VAE decode (video + mel)", timings.get("vae_decode", 0.0)),
             ("waveform (vocoder)", timings.get("waveform", 0.0)),
             ("mp4 mux", timings.get("mux", 0.0))]
    lines = [f"  {name:<26} {value * 1e3:9.1f} ms" for name, value in rows]
    lines.append(f"  {'denoising, all passes':<26} {sum(steps) * 1e3:9.1f} ms "
                 f"({len(steps)} passes, {sum(steps) / max(len(steps), 1) * 1e3:.1f} ms each)")
    lines.append(f"  {'total (wall)':<26} {wall * 1e3:9.1f} ms")
    return ("profile (after compilation):\n" + "\n".join(lines)
            + f"\nreal-time factor {seconds / wall:.2f} ({seconds:.2f} s of clip in "
              f"{wall:.2f} s)")

