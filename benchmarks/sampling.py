"""Sampling speed: per-stage time and real-time factor of text -> video+sound.

    o1 bench sampling --workdir runs/quickstart [--seconds 2 8] [--steps N]

For each clip length: one call to compile, then a timed call. Stages: prefix (the prompt's
KV cache), denoising (all passes of all windows: a pass is a denoising step, or, frame-causal,
a latent time step with all its denoising steps; a clip longer than the model's is continued
window by window), VAE decode, waveform (vocoder), context encode (continuation windows) and
the mp4 mux. Real-time factor = seconds of clip / seconds of wall time (> 1: faster than
playback).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence

from o1.benchmarks import report
from o1.sampler import FlowOptions
from o1.serve.pipeline import Pipeline, step_times

PROMPT = "a fast red circle bounces"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/quickstart",
                        help="run directory with a trained model")
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.0, 8.0],
                        help="clip lengths to time")
    parser.add_argument("--steps", type=int,
                        help="denoising steps (default: the workdir's sample.steps)")
    args = report.parse(parser, argv, __file__)
    pipe = Pipeline(args.workdir)
    flow = FlowOptions.of(pipe.config.sample, steps=args.steps)
    table = report.Table(["clip s", "windows", "prefix ms", "denoising ms (per pass)",
                          "context encode ms", "VAE decode ms", "waveform ms", "mux ms",
                          "wall s", "real-time factor"])
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            pipe.generate(PROMPT, seconds, flow, seed=1).write(f"{tmp}/warm.mp4")  # compiles
            start = time.perf_counter()
            clip = pipe.generate(PROMPT, seconds, flow, seed=0)
            clip.write(f"{tmp}/clip.mp4")
            wall = time.perf_counter() - start
            t = clip.timings
            steps = step_times(t)
            windows = 1 + pipe.continuation_windows(pipe.clip_frames, len(clip.frames))
            table.add([f"{clip.seconds:.2f}", windows, f"{t['prefix'] * 1e3:.0f}",
                       f"{sum(steps) * 1e3:.0f} ({sum(steps) / len(steps) / windows * 1e3:.0f})",
                       f"{t.get('encode', 0) * 1e3:.0f}", f"{t['vae_decode'] * 1e3:.0f}",
                       f"{t['waveform'] * 1e3:.0f}", f"{t['mux'] * 1e3:.0f}", f"{wall:.2f}",
                       f"{clip.seconds / wall:.2f}"])
    c = pipe.config
    report.publish("Sampling", table, args, note=(
        f"`{args.workdir}` checkpoint {pipe.step} ({c.name}: {c.data.width}x{c.data.height}, "
        f"{c.num_frames} frames per window at {c.data.fps} fps); prompt {PROMPT!r}, "
        f"{flow.steps} {flow.solver} steps, guidance {flow.cfg_video:g}/{flow.cfg_audio:g} "
        f"({'two rows' if flow.guided else 'one row'} per step); after one compiling call."))


if __name__ == "__main__":
    main()
