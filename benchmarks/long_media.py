"""Peak memory of reading long videos: the first seconds, and a whole file clip by clip.

    o1 bench long_media [--cache /tmp/o1_long_media] [--minutes 60] [--source-fps 10]
                        [--old-media OLD_MEDIA.py]

Generates (once, kept in --cache) an hour-long 854x480 H.264 + AAC (48 kHz stereo) mp4 and a
5-minute one, then reads them the way o1 does, each read in a fresh Python process whose peak
resident memory (ru_maxrss) is reported: `read_media(..., seconds=2.06)` as `o1 caption`
reads a video, `iter_media` over the whole hour as a folder dataset is cut (the clips are
dropped as they come), and `read_media` of the whole 5-minute file, all at 16 fps, 64x64 and
16 kHz. `--old-media` names another media.py (e.g. `git show REV:o1/media.py > old.py`) whose
`read_media` is measured on the 5-minute file too, for a before-and-after figure.

The source is 10 fps by default: x264's fastest preset makes about 125 frames/s of 480p on
two cores, so an hour at 25 fps would take 12 minutes to generate; the figures are about
memory, which the source frame rate changes only through the decoder's few buffered frames.
"""

import argparse
import fractions
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Sequence

import av
import numpy as np

from o1.benchmarks import report

WIDTH, HEIGHT, RATE = 854, 480, 48_000
READ = {"fps": 16, "size": (64, 64), "sample_rate": 16_000}

# Each read runs in its own interpreter, so that its peak is its own.
CHILD = f"""
import importlib.util, json, resource, sys, time
how, path, old = sys.argv[1:4]
if old:
    spec = importlib.util.spec_from_file_location("old_media", old)
    media = importlib.util.module_from_spec(spec)
    sys.modules["old_media"] = media
    spec.loader.exec_module(media)
else:
    from o1 import media
read = {READ!r}
start = time.perf_counter()
frames = samples = 0
if how == "seconds":
    clip = media.read_media(path, seconds=2.06, **read)
    frames, samples = len(clip.frames), len(clip.audio)
elif how == "whole":
    clip = media.read_media(path, **read)
    frames, samples = len(clip.frames), len(clip.audio)
elif how == "iter":
    for clip in media.iter_media(path, frames=33, **read):
        frames, samples = frames + len(clip.frames), samples + len(clip.audio)
print(json.dumps({{"frames": frames, "samples": samples,
                  "seconds": time.perf_counter() - start,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def generate(path: pathlib.Path, minutes: float, fps: int) -> pathlib.Path:
    """Writes (unless it exists) `minutes` of moving 854x480 video with a stereo tone."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # 25 distinct frames in a loop: enough motion that every frame is coded, cheap to make.
    ramp = np.add.outer(np.arange(HEIGHT), np.arange(WIDTH))
    pictures = []
    for i in range(25):
        luma = ((ramp + 8 * i) % 256).astype(np.uint8)
        chroma = np.full((HEIGHT // 2, WIDTH), 100 + 4 * i, np.uint8)  # U then V, planar
        pictures.append(np.concatenate([luma, chroma]))
    count = round(minutes * 60 * fps)
    with av.open(str(tmp), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps,
                               options={"preset": "ultrafast", "crf": "30"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = out.add_stream("aac", rate=RATE, layout="stereo")
        size = 1024  # AAC's frame (the codec reports it only once it is opened)
        made = 0  # audio samples written
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(pictures[i % 25], format="yuv420p")
            frame.pts = i
            out.mux(video.encode(frame))
            # Sound up to this frame's end, in the encoder's frame size.
            while made < (i + 1) * RATE // fps:
                t = (made + np.arange(size)) / RATE
                tone = 0.3 * np.sin(2 * np.pi * (220 + 20 * (t // 1 % 10)) * t)
                chunk = av.AudioFrame.from_ndarray(
                    np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo")
                chunk.sample_rate, chunk.pts = RATE, made
                chunk.time_base = fractions.Fraction(1, RATE)
                out.mux(sound.encode(chunk))
                made += size
            if i % (fps * 600) == 0:
                print(f"  {path.name}: {i / fps / 60:.0f} of {minutes:g} minutes", flush=True)
        out.mux(video.encode(None))
        out.mux(sound.encode(None))
    os.replace(tmp, path)
    return path


def measure(how: str, path: pathlib.Path, old: str = "") -> dict:
    """Runs one read in a fresh interpreter; its frames, samples, seconds and peak KiB."""
    done = subprocess.run([sys.executable, "-c", CHILD, how, str(path), old],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"reading {path} ({how}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("/tmp/o1_long_media"),
                        help="folder for the generated videos, kept between runs")
    parser.add_argument("--minutes", type=float, default=60, help="length of the long video")
    parser.add_argument("--source-fps", type=int, default=10,
                        help="frame rate of the generated videos")
    parser.add_argument("--old-media", default="",
                        help="a media.py whose read_media to measure on the 5-minute file")
    args = report.parse(parser, argv, __file__)
    started = time.perf_counter()
    long = generate(args.cache / f"long_{args.minutes:g}min_{args.source_fps}fps.mp4",
                    args.minutes, args.source_fps)
    short = generate(args.cache / f"long_5min_{args.source_fps}fps.mp4", 5, args.source_fps)
    print(f"videos ready in {time.perf_counter() - started:.0f} s")
    runs = [("nothing (import o1.media)", "none", short, ""),
            ("read_media(seconds=2.06)", "seconds", long, ""),
            ("iter_media, 33-frame clips", "iter", long, ""),
            ("read_media (whole file)", "whole", short, "")]
    if args.old_media:
        runs.append((f"read_media of {args.old_media}", "whole", short, args.old_media))
    table = report.Table(["read", "video", "frames", "samples", "wall s", "peak RSS MiB"])
    for name, how, path, old in runs:
        got = measure(how, path, old)
        minutes = 5 if path == short else args.minutes
        table.add([name, f"{minutes:g} min", f"{got['frames']:,}", f"{got['samples']:,}",
                   f"{got['seconds']:.1f}", f"{got['peak_kib'] / 1024:,.0f}"])
    report.publish("Long media", table, args, note=(
        f"{WIDTH}x{HEIGHT} H.264 (x264 ultrafast, crf 30) at {args.source_fps} fps with "
        f"{RATE // 1000} kHz stereo AAC, read at 16 fps, 64x64, 16 kHz mono; each read in a "
        f"fresh Python process, peak resident memory (ru_maxrss) including the interpreter "
        f"and imports (the first row)."))


if __name__ == "__main__":
    main()
