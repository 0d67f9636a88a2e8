"""The o1 studio: every task of a trained workdir in the browser and over HTTP.

    o1 serve --workdir runs/quickstart [--host 127.0.0.1 --port 7860]

One tab per task (Text -> Video+Sound, Video -> Caption, Video -> Sound, Sound -> Video,
Image -> Video, Extend), each also a named endpoint for `gradio_client`:

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    video, picture, sync = client.predict("a fast red circle bounces", api_name="/generate")

The Stream tab plays a clip while it is made (`o1.serve.stream`): every second or so of the
stream goes to the page as a segment (H.264 and AAC; Gradio serves them as HLS), with the sound
so far as a picture; pressing Enter in its prompt box steers the windows made from then on, and
Stop ends it. Over HTTP, `/stream` yields, per segment, the stream's playlist, the sound
picture, the segment as an mp4 with sound and a status line; `/steer` changes the prompt of the
stream running for the same client and `/stop` ends it:

    job = client.submit("a fast red circle bounces", 30.0, api_name="/stream")
    for i, (playlist, sound, segment, status) in enumerate(job):  # about one a second
        if i == 10:
            client.predict("a slow blue square bounces", api_name="/steer")

A stream runs at most `LEAD_SECONDS` ahead of real time, so a new prompt shows within a few
seconds of the viewer's present. It needs the ffmpeg and ffprobe programs (Gradio muxes the
segments with them); without them the Stream tab says so and the other tabs work.

The model is loaded and every program compiled (a warm-up call per task) before the server
listens. Requests wait in one queue: at most `concurrency` run at once on the device, at most
`queue_size` wait, and a request beyond that is refused at once ("Queue is full! Please try
again."). Uploads, outputs and examples live in one folder (`out_dir`), the only one served;
files there older than `cleanup_age` seconds are deleted.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pathlib
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np

from o1 import media
from o1.config import SampleConfig
from o1.media import Clip
from o1.sampler import FlowOptions
from o1.serve import picture
from o1.serve.checks import check_image_file
from o1.serve.pipeline import Pipeline, RequestError, read_audio, read_clip, read_image
from o1.serve.stream import Stream

log = logging.getLogger(__name__)

EXAMPLES = 4  # AV-Shapes test clips offered as examples
SEGMENT_SECONDS = 1.0  # a stream goes to the page in segments of about this length
# How far a stream may run ahead of real time (from its first segment): the player keeps this
# much in hand, and a prompt typed now shows about this much later.
LEAD_SECONDS = 2.0
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")

# How the page names each field of a request (RequestError.field).
LABELS = {"prompt": "Prompt", "seconds": "Seconds", "steps": "Denoising steps",
          "cfg_video": "Guidance on video", "cfg_audio": "Guidance on sound", "seed": "Seed",
          "video": "Video", "sound": "Sound", "image": "First frame",
          "checkpoint": "Checkpoint"}


@dataclasses.dataclass(frozen=True)
class StudioOptions:
    """How the studio serves. What one request may cost is the served config's `sample`
    section (max_steps, max_seconds, max_guidance, max_prompt_chars), as in the CLI;
    `max_steps` and `max_seconds` here, when given, replace those two for this studio."""

    host: str = "127.0.0.1"  # interface to bind; 0.0.0.0 exposes it to the network
    port: int = 7860
    out_dir: str | None = None  # uploads and outputs (default: <workdir>/samples/studio)
    max_upload: str = "50mb"  # largest upload
    max_storage: str = "2gb"  # most the served folder may hold; uploads beyond are refused
    concurrency: int = 1  # requests running at once on the device
    queue_size: int = 16  # requests waiting; more are refused with "Queue is full"
    cleanup_age: int = 3600  # seconds after which uploads and outputs are deleted
    max_seconds: float | None = None  # longest clip a request may ask for (sample.max_seconds)
    max_steps: int | None = None  # most denoising steps a request may ask for (sample.max_steps)
    # Host header values answered (the names a browser uses to reach the studio). Empty: the
    # loopback names when bound to loopback, else `host` itself and the loopback names; "*"
    # answers any (only behind a proxy that checks the name itself).
    allowed_hosts: tuple[str, ...] = ()
    warmup: bool = True  # compile every task before listening

    def __post_init__(self):
        for name in ("concurrency", "queue_size", "cleanup_age"):
            if getattr(self, name) < 1:
                raise RequestError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.port < 65536:
            raise RequestError(f"port must be in 1..65535, got {self.port}")
        if _bytes(self.max_storage, "max_storage") < _bytes(self.max_upload, "max_upload"):
            raise RequestError(f"max_storage ({self.max_storage}) must be at least max_upload "
                               f"({self.max_upload})")

    def limits(self) -> dict:
        """The `sample` limits this studio replaces."""
        return {k: v for k, v in (("max_seconds", self.max_seconds),
                                  ("max_steps", self.max_steps)) if v is not None}

    def hosts(self) -> list[str]:
        """The Host header values answered."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        if self.host in LOOPBACK_NAMES:
            return [*LOOPBACK_NAMES, "[::1]"]
        if self.host in ("0.0.0.0", "::"):
            return ["*"]  # any address of this machine; pass allowed_hosts to restrict
        return [self.host, *LOOPBACK_NAMES, "[::1]"]


def _bytes(size: str, name: str) -> int:
    """"50mb" -> bytes (kb, mb, gb: powers of 1024, as Gradio reads max_file_size)."""
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "b": 1}
    text = str(size).strip().lower()
    for unit, scale in units.items():
        if text.endswith(unit):
            try:
                value = float(text[:-len(unit)])
            except ValueError:
                break
            if value > 0:
                return int(value * scale)
    raise RequestError(f"{name} must be a size like 50mb or 2gb, got {size!r}")


class Studio:
    """A Pipeline behind checked, progress-reporting task functions, and the app over them.

    Args:
      workdir: the run directory to serve.
      options: serving options.
      step: checkpoint to serve (default: the latest).
    """

    def __init__(self, workdir: str | os.PathLike, options: StudioOptions = StudioOptions(),
                 step: int | None = None):
        self.options = options
        self.workdir = pathlib.Path(workdir)
        # One prefix length for every prompt: the warm-up then compiles all that requests need.
        self.pipe = Pipeline(workdir, step, longest_prefix_only=True,
                             limits=options.limits()).load()
        self.checks = self.pipe.checks
        self.config = self.pipe.config
        self.out_dir = prepare_out_dir(workdir, options.out_dir)
        self.outputs = self.out_dir / "outputs"
        self.outputs.mkdir(exist_ok=True)
        self._sweep()
        self.examples = self._write_examples()
        self._streams: dict[str, Stream] = {}  # the running stream of each page session
        self._streams_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------
    # Checks: the pipeline's (`o1.serve.checks`), with uploads named as the page names them.
    # ------------------------------------------------------------------------------------------

    def _options(self, steps, cfg_video, cfg_audio, seed) -> tuple[FlowOptions, int]:
        """The request's flow options and seed, within the served config's limits (its
        `sample` section for those not given)."""
        flow = self.checks.flow(steps=steps, cfg_video=cfg_video, cfg_audio=cfg_audio)
        return flow, self.checks.seed(seed)

    def _video(self, path: str | None, what: str, seconds: float | None = None) -> Clip:
        """An uploaded video (its first `seconds` when given), at the model's rates; images
        and non-videos are refused."""
        if not path:
            raise RequestError(f"no {what} was given; upload a video file (mp4, webm, mov)",
                               "video", sentence=True)
        self.checks.video(path, "video", image_hint="animate the image in the Image -> Video "
                                                     "tab")
        return self._read(path, "video", lambda: read_clip(path, self.config, seconds=seconds))

    def _sound(self, path: str | None) -> Clip:
        """An uploaded sound (an audio file or a video's sound track) at the model's rate;
        files without sound, and silent sounds, are refused."""
        if not path:
            raise RequestError("no sound was given; upload a sound file (wav, mp3, m4a, flac)",
                               "sound", sentence=True)
        self.checks.audio(path, "sound")
        sound = self._read(path, "sound", lambda: read_audio(path, self.config))
        self.checks.sound(sound.audio, field="sound", name=pathlib.Path(path).name)
        return sound

    def _image(self, path: str | None) -> np.ndarray:
        if not path:
            raise RequestError("no image was given; upload a picture (png, jpg) for the first "
                               "frame", "image", sentence=True)
        check_image_file(path, "image")
        return self._read(path, "image", lambda: read_image(path, self.config))

    @staticmethod
    def _read(path: str, field: str, read: Callable):
        """`read()`, a file that fails to decode refused by its name alone."""
        try:
            return read()
        except media.MediaError as e:
            raise RequestError(f"{pathlib.Path(path).name} {e.reason}" +
                               (f" ({e.hint})" if e.hint else ""), field, sentence=True) \
                from None

    # ------------------------------------------------------------------------------------------
    # Tasks: plain Python values in, paths and text out. The app wraps them.
    # ------------------------------------------------------------------------------------------

    def generate(self, prompt: str, seconds: float, steps: int | None = None,
                 cfg_video: float | None = None, cfg_audio: float | None = None,
                 seed: int | None = None, progress: Callable | None = None
                 ) -> tuple[str, str, str]:
        flow, seed = self._options(steps, cfg_video, cfg_audio, seed)
        return self._publish(self.pipe.generate(prompt, seconds, flow, seed, progress))

    def caption(self, video: str, language: str | None = None) -> str:
        self.checks.language_tag(language)
        return self.pipe.caption(self._video(video, "video to caption",
                                             self.pipe.clip_seconds), language=language)

    def dub(self, video: str, prompt: str | None = None, steps: int | None = None,
            cfg_video: float | None = None, cfg_audio: float | None = None,
            seed: int | None = None, progress: Callable | None = None
            ) -> tuple[str, str, str]:
        flow, seed = self._options(steps, cfg_video, cfg_audio, seed)
        self.checks.prompt(prompt, required=False)
        clip = self._video(video, "video to dub")
        return self._publish(self.pipe.dub(clip, prompt, flow, seed, progress))

    def visualize(self, sound: str, prompt: str | None = None, steps: int | None = None,
                  cfg_video: float | None = None, cfg_audio: float | None = None,
                  seed: int | None = None, progress: Callable | None = None
                  ) -> tuple[str, str, str]:
        flow, seed = self._options(steps, cfg_video, cfg_audio, seed)
        self.checks.prompt(prompt, required=False)
        clip = self._sound(sound)
        return self._publish(self.pipe.visualize(clip, prompt, None, flow, seed, progress))

    def animate(self, image: str, prompt: str, seconds: float, steps: int | None = None,
                cfg_video: float | None = None, cfg_audio: float | None = None,
                seed: int | None = None, progress: Callable | None = None
                ) -> tuple[str, str, str]:
        flow, seed = self._options(steps, cfg_video, cfg_audio, seed)
        self.checks.prompt(prompt)
        self.checks.seconds(seconds)
        first = self._image(image)
        return self._publish(self.pipe.animate(first, prompt, seconds, flow, seed, progress))

    def extend(self, video: str, seconds: float, prompt: str | None = None,
               steps: int | None = None, cfg_video: float | None = None,
               cfg_audio: float | None = None, seed: int | None = None,
               progress: Callable | None = None) -> tuple[str, str, str]:
        flow, seed = self._options(steps, cfg_video, cfg_audio, seed)
        self.checks.prompt(prompt, required=False)
        self.checks.seconds(seconds)
        clip = self._video(video, "video to extend")
        return self._publish(self.pipe.extend(clip, seconds, prompt, flow, seed, progress))

    def stream(self, prompt: str, seconds: float, steps: int | None = None,
               cfg_video: float | None = None, cfg_audio: float | None = None,
               seed: int | None = None, session: str | None = None, pace: bool = True
               ) -> Iterator[tuple[str, str, str]]:
        """Text -> video with sound as it is made: every `SEGMENT_SECONDS` or so of the stream,
        (the segment as an mp4 with sound, the sound so far as a png, a status line).

        `session` names the stream for `steer` and `stop`. With `pace`, the stream waits
        rather than run more than `LEAD_SECONDS` ahead of real time from its first segment.
        """
        flow, seed = self._options(steps, cfg_video, cfg_audio, seed)
        stream = self.pipe.stream(prompt, seconds, flow, seed)
        fps, rate = self.pipe.fps, self.pipe.sample_rate
        name, growing = uuid.uuid4().hex, picture.StreamPicture(rate)
        pictures: list[pathlib.Path] = []
        if session is not None:
            with self._streams_lock:
                self._streams[session] = stream
        first = last = None  # perf_counter of the first and the last segment handed out
        try:
            for i, chunks in enumerate(_segments(stream, round(SEGMENT_SECONDS * fps))):
                for chunk in chunks:
                    growing.add(chunk.audio, chunk.prompt)
                frames = np.concatenate([c.frames for c in chunks])
                segment = media.write_mp4(self.outputs / f"{name}-{i:04d}.mp4", frames, fps,
                                          np.concatenate([c.audio for c in chunks]), rate)
                pictures.append(self.outputs / f"{name}-{i:04d}.png")
                _save_png(pictures[-1], growing.draw())
                if len(pictures) > 2:  # the page has long fetched it
                    pictures.pop(0).unlink(missing_ok=True)
                end = (chunks[-1].start + len(chunks[-1].frames)) / fps
                status = f"**{end:.1f} s** of {seconds:g} s made · prompt: {chunks[-1].prompt}"
                last, last_unix = time.perf_counter(), time.time()
                first = first or last
                yield str(segment), str(pictures[-1]), status
                ahead = end - (time.perf_counter() - first) - LEAD_SECONDS
                if pace and ahead > 0 and round(end * fps) < stream.frames:
                    time.sleep(ahead)
        finally:
            stream.stop()
            if session is not None:
                with self._streams_lock:
                    if self._streams.get(session) is stream:
                        del self._streams[session]
        if first is not None and session is not None:
            print(f"o1 studio: stream {name} of {seconds:g} s: first segment after "
                  f"{stream.timings.get('first_chunk', 0):.2f} s, last at "
                  f"{last - first:.2f} s after the first (unix {last_unix:.3f})",
                  flush=True)

    def steer(self, prompt: str, session: str) -> bool:
        """Sets the prompt of `session`'s running stream (checked: RequestError); False when
        none runs."""
        with self._streams_lock:
            stream = self._streams.get(session)
        if stream is None:
            return False
        stream.set_prompt(prompt)
        return True

    def stop(self, session: str) -> bool:
        """Ends `session`'s running stream after the window being made; False when none
        runs."""
        with self._streams_lock:
            stream = self._streams.get(session)
        if stream is not None:
            stream.stop()
        return stream is not None

    def _publish(self, clip: Clip) -> tuple[str, str, str]:
        """Writes the mp4 and the sync picture into the served folder."""
        from PIL import Image

        name = uuid.uuid4().hex
        video = clip.write(self.outputs / f"{name}.mp4")
        image, sync = picture.sync_picture(clip.frames, clip.audio, self.config)
        png = self.outputs / f"{name}.png"
        Image.fromarray(image).save(png)
        return str(video), str(png), picture.describe(sync)

    # ------------------------------------------------------------------------------------------
    # Start-up
    # ------------------------------------------------------------------------------------------

    def _write_examples(self) -> list[dict]:
        """AV-Shapes test clips of the served config whose captions fit the model: mp4 with
        sound, silent mp4, its sound alone (wav), first frame."""
        from PIL import Image

        from o1.avshapes import generator

        folder = self.out_dir / "examples"
        folder.mkdir(exist_ok=True)
        d = self.config.data
        examples = []
        for i in range(100 * EXAMPLES):
            if len(examples) == EXAMPLES:
                break
            clip = generator.generate(self.config, "test", i)
            try:
                self.checks.prompt(clip.caption)
            except RequestError:
                continue  # a prompt this model would refuse
            n = len(examples)
            paths = {k: folder / f"{n}{k}" for k in (".mp4", "_silent.mp4", ".wav", ".png")}
            if not all(p.exists() for p in paths.values()):  # written once per folder
                media.write_mp4(paths[".mp4"], clip.video, d.fps, clip.audio, d.sample_rate)
                media.write_mp4(paths["_silent.mp4"], clip.video, d.fps)
                _write_wav(paths[".wav"], clip.audio, d.sample_rate)
                Image.fromarray(clip.video[0]).save(paths[".png"])
            examples.append({"caption": clip.caption, "video": str(paths[".mp4"]),
                             "silent": str(paths["_silent.mp4"]), "sound": str(paths[".wav"]),
                             "image": str(paths[".png"])})
        return examples

    def warm_up(self) -> float:
        """Runs every task once (2 steps), and a stream, so requests find their programs
        compiled."""
        start = time.perf_counter()
        first = self.examples[0]
        longer = self.pipe.clip_seconds * 1.5  # one continuation window as well
        for run in (
                lambda: self.generate(first["caption"], longer, steps=2),
                lambda: self.caption(first["video"]),
                lambda: self.dub(first["silent"], steps=2),
                lambda: self.visualize(first["sound"], steps=2),
                lambda: self.animate(first["image"], first["caption"], self.pipe.clip_seconds,
                                     steps=2),
                lambda: self.extend(first["video"], 0.5, steps=2)):
            outputs = run()
            for path in outputs[:2] if isinstance(outputs, tuple) else ():
                pathlib.Path(path).unlink()
        # Two windows of a stream, its segments and its sound picture, so the first stream
        # asked for starts as fast as later ones.
        for segment, png, _ in self.stream(first["caption"], longer, steps=2, pace=False):
            pathlib.Path(segment).unlink()
            pathlib.Path(png).unlink(missing_ok=True)
        return time.perf_counter() - start

    def _sweep(self, folder: pathlib.Path | None = None) -> None:
        """Deletes outputs (or every file under `folder`) older than `cleanup_age`."""
        limit = time.time() - self.options.cleanup_age
        for path in (folder or self.outputs).rglob("*"):
            if path.is_file() and path.stat().st_mtime < limit and \
                    path.parent != self.out_dir / "examples":
                path.unlink(missing_ok=True)

    def _sweep_all(self) -> None:
        self._sweep(self.out_dir)

    # ------------------------------------------------------------------------------------------
    # The app
    # ------------------------------------------------------------------------------------------

    def describe(self) -> str:
        c = self.config
        return (f"Serving `{self.workdir}` · checkpoint {self.pipe.step} · "
                f"{c.model.num_layers} layers, width {c.model.d_model} · clips of {c.num_frames} "
                f"frames at {c.data.fps} fps ({self.pipe.clip_seconds:.2f} s), "
                f"{c.data.width}x{c.data.height}, sound at {c.data.sample_rate} Hz")

    def build(self):
        """The gr.Blocks app (queue configured)."""
        import gradio as gr

        o, c, s = self.options, self.config, self.config.sample
        every = max(1, min(o.cleanup_age // 2, 300))
        with gr.Blocks(title="o1 studio", analytics_enabled=False,
                       delete_cache=(every, o.cleanup_age)) as app:
            gr.Markdown(f"# o1 studio\n{self.describe()}  \nOutputs are deleted after "
                        f"{o.cleanup_age} s.", elem_id="served")
            clip_s = round(self.pipe.clip_seconds, 2)
            ex = self.examples

            def sampling():
                with gr.Accordion("Sampling", open=False):
                    steps = gr.Slider(1, s.max_steps, value=s.steps, step=1,
                                      label="Denoising steps")
                    cfg_v = gr.Slider(0, s.max_guidance, value=s.cfg_video, step=0.5,
                                      label="Guidance on video (1 = none)")
                    cfg_a = gr.Slider(0, s.max_guidance, value=s.cfg_audio, step=0.5,
                                      label="Guidance on sound (1 = none)")
                    seed = gr.Number(s.seed, precision=0, minimum=0,
                                     maximum=SampleConfig.MAX_SEED, label="Seed")
                return [steps, cfg_v, cfg_a, seed]

            def seconds_slider(label: str, value: float, low: float):
                return gr.Slider(low, s.max_seconds, value=value, step=1 / c.data.fps,
                                 label=label)

            def results(tab: str):
                with gr.Column():
                    video = gr.Video(label="Video with sound", elem_id=f"{tab}-video",
                                     height=360)
                    image = gr.Image(label="Sound (mel + waveform) with bounces and onsets",
                                     type="filepath", elem_id=f"{tab}-sync")
                    sync = gr.Markdown(elem_id=f"{tab}-sync-text")
                return [video, image, sync]

            def task(fn, inputs, outputs, button, api_name):
                button.click(_gradio_task(fn), inputs, outputs, api_name=api_name,
                             concurrency_id="device", concurrency_limit=o.concurrency)

            with gr.Tab("Text -> Video+Sound", id="generate"):
                with gr.Row():
                    with gr.Column():
                        prompt = gr.Textbox(label="Prompt", max_lines=3, elem_id="prompt",
                                            placeholder="a fast red circle bounces")
                        seconds = seconds_slider("Seconds", clip_s, 1 / c.data.fps)
                        flow = sampling()
                        go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                        gr.Examples([[e["caption"]] for e in ex], [prompt], label="Prompts "
                                    "from the AV-Shapes test split")
                    out = results("generate")
                task(self.generate, [prompt, seconds, *flow], out, go, "generate")

            with gr.Tab("Video -> Caption", id="caption"):
                with gr.Row():
                    with gr.Column():
                        video = gr.Video(label="Video", sources=["upload"])
                        languages = list(c.text.languages)
                        language = gr.Dropdown(languages, value=languages[0],
                                               label="Language", elem_id="caption-lang",
                                               visible=len(languages) > 1)
                        go = gr.Button("Caption", variant="primary", elem_id="caption-btn")
                        gr.Examples([[e["video"]] for e in ex], [video])
                    text = gr.Textbox(label="Caption", elem_id="caption-text")
                task(self.caption, [video, language], [text], go, "caption")

            with gr.Tab("Video -> Sound", id="dub"):
                with gr.Row():
                    with gr.Column():
                        video = gr.Video(label="Video (its sound is replaced)",
                                         sources=["upload"])
                        prompt = gr.Textbox(label="Prompt (optional)", max_lines=3)
                        flow = sampling()
                        go = gr.Button("Dub", variant="primary", elem_id="dub-btn")
                        gr.Examples([[e["silent"]] for e in ex], [video])
                    out = results("dub")
                task(self.dub, [video, prompt, *flow], out, go, "dub")

            with gr.Tab("Sound -> Video", id="visualize"):
                with gr.Row():
                    with gr.Column():
                        sound = gr.Audio(label="Sound (kept as the clip's sound)",
                                         type="filepath", sources=["upload"])
                        prompt = gr.Textbox(label="Prompt (optional)", max_lines=3)
                        flow = sampling()
                        go = gr.Button("Make the video", variant="primary",
                                       elem_id="visualize-btn")
                        gr.Examples([[e["sound"]] for e in ex], [sound])
                        # Gradio protects the example files of a video or an image from
                        # delete_cache, but not an audio component's: name them.
                        sound.keep_in_cache.update(e["sound"] for e in ex)
                    out = results("visualize")
                task(self.visualize, [sound, prompt, *flow], out, go, "visualize")

            with gr.Tab("Image -> Video", id="animate"):
                with gr.Row():
                    with gr.Column():
                        image = gr.Image(label="First frame", type="filepath",
                                         sources=["upload"])
                        prompt = gr.Textbox(label="Prompt", max_lines=3)
                        seconds = seconds_slider("Seconds", clip_s, 1 / c.data.fps)
                        flow = sampling()
                        go = gr.Button("Animate", variant="primary", elem_id="animate-btn")
                        gr.Examples([[e["image"], e["caption"]] for e in ex], [image, prompt])
                    out = results("animate")
                task(self.animate, [image, prompt, seconds, *flow], out, go, "animate")

            with gr.Tab("Extend", id="extend"):
                with gr.Row():
                    with gr.Column():
                        video = gr.Video(label="Clip to continue", sources=["upload"])
                        seconds = seconds_slider("Seconds to add", 1.0, 1 / c.data.fps)
                        prompt = gr.Textbox(label="Prompt (optional)", max_lines=3)
                        flow = sampling()
                        go = gr.Button("Extend", variant="primary", elem_id="extend-btn")
                        gr.Examples([[e["video"]] for e in ex], [video])
                    out = results("extend")
                task(self.extend, [video, seconds, prompt, *flow], out, go, "extend")

            with gr.Tab("Stream", id="stream"):
                self._stream_tab(gr, sampling, seconds_slider)

        _named_inputs(app)
        app.queue(max_size=o.queue_size, default_concurrency_limit=o.concurrency)
        return app

    def _stream_tab(self, gr, sampling: Callable, seconds_slider: Callable) -> None:
        """The Stream tab: Start plays the stream as it is made, Enter in the prompt box
        steers it, Stop ends it; each also an endpoint (/stream, /steer, /stop)."""
        o, s = self.options, self.config.sample
        missing = stream_unavailable()
        with gr.Row():
            with gr.Column():
                if missing:
                    gr.Markdown(f"**{missing}**", elem_id="stream-missing")
                prompt = gr.Textbox(label="Prompt (Enter changes it while the stream runs)",
                                    max_lines=1, elem_id="stream-prompt",
                                    placeholder="a fast red circle bounces")
                seconds = seconds_slider("Seconds", min(s.max_seconds, 30.0),
                                         1 / self.config.data.fps)
                flow = sampling()
                with gr.Row():
                    go = gr.Button("Start", variant="primary", elem_id="stream-btn",
                                   interactive=not missing)
                    stop = gr.Button("Stop", elem_id="stream-stop")
                gr.Examples([[e["caption"]] for e in self.examples], [prompt],
                            label="Prompts from the AV-Shapes test split")
            with gr.Column():
                video = gr.Video(label="Stream (picture with sound, played as it is made)",
                                 streaming=True, autoplay=True, elem_id="stream-video",
                                 height=360)
                # unlabelled: the picture says what it is in its first line
                image = gr.Image(label="Sound so far", show_label=False, type="filepath",
                                 elem_id="stream-sound")
                status = gr.Markdown(elem_id="stream-status")
                segment = gr.File(label="Last segment (mp4)", visible=False)

        def start(prompt, seconds, steps, cfg_video, cfg_audio, seed, request):
            if missing:
                raise gr.Error(missing, print_exception=False)
            try:
                for path, png, text in self.stream(prompt, seconds, steps, cfg_video,
                                                   cfg_audio, seed, request.session_hash):
                    yield path, png, path, text
            except RequestError as e:
                raise gr.Error(_on_page(e), print_exception=False) from None

        def steer(prompt, request):
            try:
                self.steer(prompt, request.session_hash)
            except RequestError as e:
                raise gr.Error(_on_page(e), print_exception=False) from None

        def stop_stream(request):
            self.stop(request.session_hash)

        # Gradio hands the request (its session) to a parameter annotated gr.Request, which it
        # resolves among the module's globals; gradio is imported only when the app is built.
        for fn in (start, steer, stop_stream):
            fn.__annotations__["request"] = gr.Request

        go.click(start, [prompt, seconds, *flow], [video, image, segment, status],
                 api_name="stream", concurrency_id="device", concurrency_limit=o.concurrency)
        # Not queued behind the device: they only reach into the running stream.
        prompt.submit(steer, [prompt], None, api_name="steer", concurrency_limit=None)
        stop.click(stop_stream, None, None, api_name="stop", concurrency_limit=None)

    def launch(self, block: bool = True):
        """Builds the app and serves it; returns (app, local_url)."""
        from starlette.middleware import Middleware
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app = self.build()
        o = self.options
        middleware = [
            # A page on another site that resolves its own name to this machine (DNS
            # rebinding) sends its name as Host; only the names the studio is reached by pass.
            Middleware(TrustedHostMiddleware, allowed_hosts=o.hosts()),
            Middleware(_StorageCap, folder=self.out_dir, limit=_bytes(o.max_storage, ""),
                       sweep=self._sweep_all)]
        _, url, _ = app.launch(
            server_name=o.host, server_port=o.port, max_file_size=o.max_upload,
            allowed_paths=[str(self.out_dir)], show_error=True, quiet=True, ssr_mode=False,
            prevent_thread_lock=not block, footer_links=["api"],
            app_kwargs={"middleware": middleware})
        return app, url


def _write_wav(path: pathlib.Path, audio: np.ndarray, sample_rate: int) -> None:
    """A mono float waveform as a 16-bit PCM wav, written whole or not at all."""
    import wave

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes((np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _segments(chunks: Iterator, frames: int) -> Iterator[list]:
    """`chunks` (`o1.serve.stream.Chunk`) in runs of at least `frames` frames, the last run
    whatever is left."""
    run: list = []
    for chunk in chunks:
        run.append(chunk)
        if sum(len(c.frames) for c in run) >= frames:
            yield run
            run = []
    if run:
        yield run


def _save_png(path: pathlib.Path, image: np.ndarray) -> None:
    """`image` as a png, written whole or not at all."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        Image.fromarray(image).save(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def stream_unavailable() -> str | None:
    """Why the Stream tab cannot play here (Gradio's streamed video needs the ffmpeg and
    ffprobe programs), or None."""
    missing = [name for name in ("ffmpeg", "ffprobe") if shutil.which(name) is None]
    if not missing:
        return None
    return (f"Streaming needs the ffmpeg and ffprobe programs, and {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed on the server: install "
            "FFmpeg (apt-get install ffmpeg) and restart the studio. The other tabs work "
            "without it.")


def _gradio_task(fn: Callable) -> Callable:
    """`fn` as a Gradio handler: a per-step progress bar, and RequestError as gr.Error."""
    import inspect

    import gradio as gr

    params = [p for name, p in inspect.signature(fn).parameters.items() if name != "progress"]
    takes_progress = len(params) < len(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def handler(*args):
        kwargs = {}
        if takes_progress:  # Gradio passes its tracker last (see __signature__ below)
            *args, tracker = args
            kwargs["progress"] = lambda done, total: tracker((done, total), desc="denoising",
                                                             unit="steps")
        try:
            return fn(*args, **kwargs)
        except RequestError as e:
            raise gr.Error(_on_page(e), print_exception=False) from None

    if takes_progress:  # Gradio finds the tracker by its default value
        params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=gr.Progress()))
    handler.__signature__ = inspect.Signature(params)
    return handler


def _on_page(error: RequestError) -> str:
    """A refusal as the page shows it: the field by its label."""
    label = LABELS.get(error.field, error.field)
    return f"{label}: {error.message}" if error.sentence and error.field else \
        error.named(lambda field: label)


def _named_inputs(app) -> None:
    """Makes every input component of `app` name itself when Gradio refuses its value (a
    slider out of range, a file it cannot open): Gradio's own message names no field and may
    hold the server's path to the upload."""
    import gradio as gr

    for block in app.blocks.values():
        if isinstance(block, gr.components.Component) and getattr(block, "label", None) and \
                not getattr(block, "_o1_named", False):
            block.preprocess = _named_preprocess(block, block.preprocess)
            block._o1_named = True


def _named_preprocess(block, preprocess: Callable) -> Callable:
    import gradio as gr

    @functools.wraps(preprocess)
    def named(payload):
        try:
            return preprocess(payload)
        except gr.Error as e:
            message = str(e.message) if not _has_path(str(e.message)) else "cannot be read"
            raise gr.Error(f"{block.label}: {message}", print_exception=False) from None
        except Exception:  # noqa: BLE001 - Gradio's decoders raise anything; none may leak
            log.exception("%s: the upload could not be read", block.label)
            name = _upload_name(payload)
            kind = "a picture (png, jpg)" if isinstance(block, gr.Image) else "another file"
            raise gr.Error(f"{block.label}: {name} cannot be read; give {kind}",
                           print_exception=False) from None
    return named


def _upload_name(payload) -> str:
    """The name an upload had on the user's machine (never where the server keeps it)."""
    name = payload.get("orig_name") if isinstance(payload, dict) else \
        getattr(payload, "orig_name", None)
    return pathlib.Path(name).name if name else "the upload"


def _has_path(message: str) -> bool:
    return "/" in message or "\\" in message


class _StorageCap:
    """ASGI middleware that refuses an upload (HTTP 507) while the served folder holds
    `limit` bytes or more, after deleting what is older than the cleanup age."""

    def __init__(self, app, folder: pathlib.Path, limit: int, sweep: Callable[[], None]):
        self.app, self.folder, self.limit, self.sweep = app, folder, limit, sweep

    def used(self) -> int:
        return sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and \
                scope["path"].rstrip("/").endswith("/upload"):
            length = int(dict(scope["headers"]).get(b"content-length", b"0") or 0)
            if self.used() + length > self.limit:
                self.sweep()
            if self.used() + length > self.limit:
                from starlette.responses import PlainTextResponse

                response = PlainTextResponse(
                    "The studio's upload space is full; try again when older files have been "
                    "deleted.", status_code=507)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def prepare_out_dir(workdir: str | os.PathLike, out_dir: str | None) -> pathlib.Path:
    """Creates the served folder and points Gradio's upload and cache folder at it (Gradio
    reads GRADIO_TEMP_DIR when an app is built; its video helpers, at import)."""
    folder = pathlib.Path(out_dir or pathlib.Path(workdir) / "samples" / "studio").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return folder
