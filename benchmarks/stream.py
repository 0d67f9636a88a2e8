"""Streaming: time to the first picture and sound, real-time factor, and cost per generated
second and peak memory as a stream grows (they should not grow with it).

    o1 bench stream --workdir runs/quickstart [--seconds 10 30 60 120]

One short stream compiles every program first (`Pipeline.stream`: a rolling window of one
model clip, `sample.stream_seconds` added per window). Then, for each length, a fresh stream
of the same prompt: first chunk = seconds from the request (prompt prefill included) to the
first latent step's frames and sound; ms per generated second = wall / seconds of stream;
first / last 10 s = the same over the stream's first and last 10 s (flat: about equal); peak
memory = the largest resident set sampled while it ran, above the resident set before it.
The host's bfloat16 matmul peak is measured in the same run, since sampling time scales with it.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
from collections.abc import Sequence

from o1.benchmarks import report
from o1.flops import measure_peak
from o1.serve.pipeline import Pipeline

PROMPT = "a fast red circle bounces"
PART_S = 10.0  # the stretches at a stream's start and end whose costs are compared


def _rss() -> int:
    """Resident set size of this process in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class _Watcher(threading.Thread):
    """Samples the resident set every 50 ms until `stop`, which returns the largest."""

    def __init__(self, start: int):
        super().__init__(daemon=True)
        self.high, self.running = start, True

    def run(self) -> None:
        while self.running:
            self.high = max(self.high, _rss())
            time.sleep(0.05)

    def stop(self) -> int:
        self.running = False
        self.join()
        return max(self.high, _rss())


def _cost(times: list[tuple[int, float]], begin: float, end: float, fps: float) -> float:
    """ms of wall time per generated second between stream seconds `begin` and `end`, from
    (frames handed out, seconds since the start) after each chunk."""
    inside = [(f, t) for f, t in times if begin * fps <= f <= end * fps]
    (f0, t0), (f1, t1) = inside[0], inside[-1]
    return (t1 - t0) / max(f1 - f0, 1) * fps * 1e3


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/quickstart",
                        help="run directory with a trained model")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0, 60.0, 120.0],
                        help="stream lengths to time")
    args = report.parse(parser, argv, __file__)
    longest = max(args.seconds)
    pipe = Pipeline(args.workdir, limits={"max_seconds": max(longest, 1.0)}).load()
    list(pipe.stream(PROMPT, seconds=2 * pipe.clip_seconds + 2, seed=1))  # compiles
    peak = measure_peak("bfloat16")
    table = report.Table(["stream s", "first chunk s", "wall s", "real-time factor",
                          "ms per generated s", "first / last 10 s", "peak memory MB",
                          "windows"])
    for seconds in args.seconds:
        before = _rss()
        watcher = _Watcher(before)
        watcher.start()
        start = time.perf_counter()
        stream = pipe.stream(PROMPT, seconds=seconds, seed=0)
        times = [(chunk.start + len(chunk.frames), chunk.made_at) for chunk in stream]
        wall = time.perf_counter() - start
        made = times[-1][0] / pipe.fps
        high = watcher.stop()
        table.add([f"{made:.1f}", f"{stream.timings['first_chunk']:.3f}", f"{wall:.1f}",
                   f"{made / wall:.2f}", f"{wall / made * 1e3:.0f}",
                   f"{_cost(times, 0, PART_S, pipe.fps):.0f} / "
                   f"{_cost(times, made - PART_S, made, pipe.fps):.0f}",
                   f"{(high - before) / 2**20:.0f}", stream.windows])
    c = pipe.config
    report.publish("Streaming", table, args, note=(
        f"`{args.workdir}` checkpoint {pipe.step} ({c.name}, "
        f"{c.sequence.media_attention} media, {c.num_frames} frames a window at "
        f"{c.data.fps} fps, {c.sample.stream_seconds:g} s added per window); prompt "
        f"{PROMPT!r}, {c.sample.steps} {c.sample.solver} steps, guidance "
        f"{c.sample.cfg_video:g}/{c.sample.cfg_audio:g}; measured bfloat16 matmul peak "
        f"{peak / 1e9:.0f} GFLOP/s; after one compiling stream."))


if __name__ == "__main__":
    main()
