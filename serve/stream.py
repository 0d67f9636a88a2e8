"""Streaming: picture and sound handed out latent step by latent step, for as long as asked,
following a prompt that may change on the way.

    stream = Pipeline("runs/quickstart").stream("a fast red circle bounces", seconds=120)
    for chunk in stream:            # one latent step: frames [n, H, W, 3], audio [n * spf]
        player.play(chunk.frames, chunk.audio)
        if user_typed:
            stream.set_prompt("a slow blue square bounces")

A stream is made over a rolling window of one model clip (t latent steps). The first window
is text -> video + sound; every later one is a continuation whose first c latent steps are
the end of what was made (the last 1 + t_down (c - 1) frames re-encoded, the sound's latents
as made) and whose `hop` new steps are appended. Every window has the same size and its
tokens the positions of a training clip, so compute and memory per generated second stay flat
however long the stream runs, and the model never sees a position it was not trained on.
A frame-causal model generates only a window's new steps (the steps after them are never
computed) and hands out the first step of the stream after one step's denoising; a
bidirectional one denoises every window whole (its first window is all t steps).

The prompt is read at the start of each window: `Stream.set_prompt` (the studio's prompt
box) or a schedule of (seconds, prompt) switches it for every window that starts after the
switch, while the past stays as made. The window where it changes is given fewer steps of the
past (`sample.stream_switch_steps`, 1 by default), so the new prompt is not outvoted by a
picture that shows the old one. Sound goes through `GriffinLimStream`, which holds the
samples already handed out fixed, so a tone runs on from one window to the next; it keeps
the last few mel frames back until the next window, and a chunk is handed out when its
frames and its sound are both made.

Axes: T frames, H W pixels, N samples.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence

import jax
import numpy as np

from o1.sampler import FlowOptions, MediaRequest, RequestError
from o1.sequence import AUDIO
from o1.tokenizers.audio import GriffinLimStream

__all__ = ["Chunk", "Stream"]


@dataclasses.dataclass
class Chunk:
    """One latent step of a stream: its frames and their sound.

    Attributes:
      frames: uint8 [T, H, W, 3]: 1 frame for the stream's first step, t_down after.
      audio: float32 [T * samples_per_frame] mono at the model's sample rate.
      start: the stream's index of the first frame.
      step: the stream's latent step (0, 1, ...).
      prompt: the prompt the window that made it read.
      made_at: seconds from the stream's start (its first `next`) to this chunk's hand-out.
    """

    frames: np.ndarray
    audio: np.ndarray
    start: int
    step: int
    prompt: str
    made_at: float


class Stream:
    """An iterator of `Chunk`s; see the module docstring. Made by `Pipeline.stream`.

    Args:
      pipe: a Pipeline (its model loads at the first chunk).
      schedule: [(seconds, prompt), ...], the first at 0: from each time on, windows read
        that prompt. Every prompt is checked here.
      seconds: length of the stream, or None to run until `stop`.
      flow: flow options (checked by the pipeline).
      seed: the stream's seed; window w samples with seed + 1000 w.
      hop: latent steps each window after the first adds (1 to t - 1); default
        `sample.stream_seconds` of them.
    """

    def __init__(self, pipe, schedule: Sequence[tuple[float, str]], seconds: float | None,
                 flow: FlowOptions, seed: int, hop: int | None = None):
        c = pipe.config
        self.pipe, self.flow, self.seed = pipe, flow, seed
        self.t, self.t_down = c.num_video_latents, c.video_vae.t_down
        if hop is None:  # whole latent steps, within a window
            hop = min(max(1, round(c.sample.stream_seconds * c.data.fps / self.t_down)),
                      self.t - 1)
        if not 1 <= hop < self.t:
            raise RequestError(f"must be 1 to {self.t - 1} latent steps (a window of this model "
                               f"is {self.t}), got {hop}", "hop")
        self.hop = int(hop)
        self.frames = None if seconds is None else pipe.check_seconds(seconds)
        if not schedule or schedule[0][0] != 0:
            raise RequestError("must start at 0 s", "schedule")
        self._schedule = [(float(at), text, pipe.prompt_ids(text)) for at, text in schedule]
        if any(b[0] <= a[0] for a, b in zip(self._schedule[:-1], self._schedule[1:], strict=True)):
            raise RequestError("times must increase", "schedule")
        self.switch_context = c.sample.stream_switch_steps  # where the prompt changes
        self._live: tuple[str, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.timings: dict[str, float] = {}  # "first_chunk" and "total" seconds
        self.windows = 0  # windows made so far

    # ------------------------------------------------------------------------------------------
    # Steering
    # ------------------------------------------------------------------------------------------

    def set_prompt(self, prompt: str) -> None:
        """Every window that starts from now on reads `prompt` (checked here: RequestError);
        what was made stays."""
        ids = self.pipe.prompt_ids(prompt)
        with self._lock:
            self._live = (prompt, ids)

    def stop(self) -> None:
        """Ends the stream after the window being made: its chunks and the sound still held
        back are handed out, then iteration stops."""
        self._stopped = True

    def _steps_to_switch(self, made: int) -> int:
        """Latent steps from frame `made` to the next scheduled prompt (at least 1), or a
        large number when none is ahead."""
        fps = self.pipe.fps
        ahead = [at for at, _, _ in self._schedule if at * fps > made + 1e-6]
        if not ahead or made == 0:
            return self.t
        return max(1, -(-(round(ahead[0] * fps) - made) // self.t_down))

    def _prompt(self, seconds: float) -> tuple[str, np.ndarray]:
        with self._lock:
            if self._live is not None:
                return self._live
        _, text, ids = [s for s in self._schedule if s[0] <= seconds + 1e-9][-1]
        return text, ids

    # ------------------------------------------------------------------------------------------
    # Making
    # ------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Chunk]:
        pipe = self.pipe.load()
        c, tok, builder = pipe.config, pipe.tokenizers, pipe.sampler.builder
        spf, fps = pipe.spf, pipe.fps
        per_audio = c.audio.hop * c.audio.a_down  # samples of one audio latent
        mel_per_frame = spf / c.audio.hop
        vocoder = GriffinLimStream(c.audio, pipe.sample_rate, self.seed)
        audio_steps = np.bincount(builder.latent_step[builder.modality == AUDIO],
                                  minlength=self.t)  # audio latents of each latent step
        begin = time.perf_counter()
        made = 0  # frames made so far
        recent = np.zeros((0, c.data.height, c.data.width, 3), np.uint8)  # the last frames
        audio_z, audio_from = np.zeros((0, c.audio.channels), np.float32), 0  # and latents
        mel_given = 0  # mel frames given to the vocoder
        picture = recent[:0]  # frames made, not handed out
        sound = np.zeros(0, np.float32)  # samples made, not handed out
        handed, step = 0, 0  # frames handed out, the next chunk's latent step
        # (first frame, prompt) of the windows whose chunks are not all handed out
        prompts: list[tuple[int, str]] = []
        window = 0
        while True:
            done = self._stopped or (self.frames is not None and made >= self.frames)
            if done:
                sound = np.concatenate([sound, vocoder.flush()])
            else:
                text, ids = self._prompt(made / fps)
                prompts.append((made, text))
                # A window ends where a scheduled prompt starts, so the switch shows at once.
                hop = min(self.hop, self._steps_to_switch(made))
                # given steps: as many as were made, at most a window less `hop`
                context = min(1 + (made - 1) // self.t_down, self.t - hop) if made else 0
                if context and prompts[:-1] and prompts[-2][1] != text:
                    context = min(context, self.switch_context)
                new = hop if builder.causal else self.t - context
                last = context + new - 1  # the window's last latent step made
                keep = 1 + self.t_down * (context - 1) if context else 0  # frames given
                start = made - keep  # the stream frame of the window's frame 0
                skip = (start - audio_from) * spf // per_audio
                video_z, window_audio = self._window(
                    ids, recent[len(recent) - keep:], audio_z[skip:], context, last, window)
                length = 1 + self.t_down * last  # frames of the window up to `last`
                decoded = tok.decode_video(video_z[None])[0][keep:length]
                # Audio latents after `last` were not made (frame-causal): the decoder's
                # convolutions see the last one made repeated instead of noise.
                count = int(audio_steps[:last + 1].sum())
                audio_z, audio_from = window_audio[:count], start
                window_audio[count:] = window_audio[count - 1]
                mel = tok.decode_mel(window_audio[None])[0]
                offset = round(start * mel_per_frame)  # stream mel frame of the window's 0
                upto = int(np.floor(length * mel_per_frame))
                sound = np.concatenate([sound, vocoder(mel[mel_given - offset:upto])])
                mel_given = offset + upto
                picture = np.concatenate([picture, decoded])
                recent = np.concatenate([recent, decoded])[-pipe.clip_frames:]
                made += len(decoded)
                window += 1
                self.windows = window
            while True:  # hand out every step whose frames and sound are made
                n = 1 if step == 0 else self.t_down
                if self.frames is not None:
                    n = min(n, self.frames - handed)
                if not n or len(picture) < n:
                    break
                if len(sound) < n * spf:
                    if not done:
                        break
                    sound = np.pad(sound, (0, n * spf - len(sound)))
                while len(prompts) > 1 and prompts[1][0] <= handed:
                    prompts.pop(0)  # windows whose chunks are all handed out
                prompt = prompts[0][1]
                now = time.perf_counter() - begin
                self.timings.setdefault("first_chunk", now)
                yield Chunk(picture[:n], sound[:n * spf], handed, step, prompt, now)
                picture, sound = picture[n:], sound[n * spf:]
                handed += n
                step += 1
            if done:
                self.timings["total"] = time.perf_counter() - begin
                return

    def _window(self, ids, context_frames, audio_z, context: int, last: int, window: int
                ) -> tuple[np.ndarray, np.ndarray]:
        """Samples one window up to latent step `last` (normalized latents: video
        [t, h, w, C], audio [a, Ca]); its first `context` steps are `context_frames` and the
        audio latents `audio_z` (those of the window's first frames on)."""
        pipe = self.pipe
        tok, sampler = pipe.tokenizers, pipe.sampler
        video_z, audio = pipe.blank_latents()
        if context:
            video_z = tok.encode_video(pipe._fit(context_frames, None)[0][None])[0]
            audio[:len(audio_z)] = audio_z[:len(audio)]
            task = "continuation"
        else:
            task = "text_to_av"
        request = MediaRequest(ids, video_z, audio,
                               sampler.builder.noised_mask(task, max(context, 1)))
        key = jax.random.key(self.seed + 1000 * window)
        for i, media in sampler.iter_media([request], self.flow, key):
            if i >= last:
                return sampler.builder.unpack_media(media[0])
        raise AssertionError(f"the window ended before latent step {last}")
