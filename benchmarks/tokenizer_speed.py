"""Tokenizer speed: encode and decode clips per second, video and audio, at a batch size.

    o1 bench tokenizer_speed --workdir runs/quickstart [--clips 32] [--batch 8]

Clips are AV-Shapes test clips of the workdir's config. Each stage runs once on one batch to
compile, then over all clips timed. Audio decode is split into the VAE (latents -> log-mel)
and the vocoder (log-mel -> waveform, Griffin-Lim).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from o1.avshapes import generator
from o1.benchmarks import report
from o1.tokenizers.bundle import Tokenizers


def _rate(fn, batches: list) -> float:
    """Clips per second of `fn` over `batches` (after one compiling call)."""
    fn(batches[0])
    start = time.perf_counter()
    clips = 0
    for batch in batches:
        np.asarray(fn(batch))
        clips += len(batch)
    return clips / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/quickstart",
                        help="run directory with trained tokenizers")
    parser.add_argument("--clips", type=int, default=32, help="clips to time")
    parser.add_argument("--batch", type=int, default=8, help="clips per call")
    args = report.parse(parser, argv, __file__)
    tok = Tokenizers(args.workdir)
    c = tok.config
    clips = [generator.generate(c, "test", i) for i in range(args.clips)]
    split = range(0, args.clips, args.batch)
    video = [np.stack([x.video for x in clips[i:i + args.batch]]) for i in split]
    audio = [np.stack([x.audio for x in clips[i:i + args.batch]]) for i in split]
    video_z = [tok.encode_video(v) for v in video]
    audio_z = [tok.encode_audio(a) for a in audio]
    mels = [tok.decode_mel(z) for z in audio_z]
    table = report.Table(["stage", "clips/s", "real-time factor"])
    seconds = c.num_frames / c.data.fps
    for name, fn, batches in (
            ("video encode", tok.encode_video, video),
            ("video decode", tok.decode_video, video_z),
            ("audio encode (log-mel + VAE)", tok.encode_audio, audio),
            ("audio decode (VAE -> log-mel)", tok.decode_mel, audio_z),
            ("vocoder (log-mel -> waveform)", lambda m: tok.vocoder(m, c.num_samples), mels)):
        rate = _rate(fn, batches)
        table.add([name, f"{rate:.1f}", f"{rate * seconds:.0f}"])
    report.publish("Tokenizers", table, args, note=(
        f"`{args.workdir}` ({c.name}: {c.data.width}x{c.data.height}, {c.num_frames} frames, "
        f"{seconds:.2f} s clips; video latents {c.num_video_latents}x{c.latent_grid[0]}x"
        f"{c.latent_grid[1]}x{c.video_vae.channels}); {args.clips} AV-Shapes test clips in "
        f"batches of {args.batch}. Real-time factor = seconds of clip per second of work."))


if __name__ == "__main__":
    main()
