"""Context use: how much a trained transformer's prediction for one latent frame reads the
other frames of the clip.

    o1 bench context_use --workdir runs/quickstart [--checkpoint N] [--clips 6]

For validation clips laid out as text -> video + audio with every media token at noise level
t, the clean latents of one latent frame k are swapped for another clip's (the noise stays the
same), and the model's estimate of the clean video latents, x0 = x_t - t v, is compared with
the unswapped one. "own" is the mean absolute change on frame k itself, "adjacent" on frames
k - 1 and k + 1, "other" on every other frame. A model that only denoises each frame by itself
(and from the caption) moves on its own frame and nowhere else; one that keeps objects on a
path from frame to frame must move its neighbours too.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from o1.benchmarks import report
from o1.sequence import TEXT, VIDEO, SequenceBuilder
from o1.serve.pipeline import load_model
from o1.train import datasets


def frame_changes(forward, builder: SequenceBuilder, example: dict, other: dict, t: float,
                  seed: int) -> np.ndarray:
    """float [T, T]: mean |change| of the x0 estimate on frame j when frame k (row) is
    swapped; `forward` maps model inputs to velocities."""
    rng = np.random.default_rng(seed)
    built = builder.build(example, "text_to_av", np.random.default_rng(seed))
    row = builder.batch([[built]], len(built["tokens"]))
    modality = row["modality"][0]
    media = np.flatnonzero(modality != TEXT)
    frame = np.full(len(modality), -1)
    frame[media] = builder.latent_step
    clean = row["media"][0]
    swapped_in = np.zeros_like(clean)
    swapped_in[media] = builder.media_features(other["video_latents"], other["audio_latents"])
    noise = np.where(modality != TEXT, t, 0.0).astype(np.float32)[:, None]
    eps = rng.standard_normal(clean.shape).astype(np.float32)
    inputs = {key: jnp.asarray(value) for key, value in row.items()}
    inputs["noise"] = jnp.asarray(noise[None, :, 0])

    def estimate(x0):
        x_t = (1 - noise) * x0 + noise * eps
        velocity = np.asarray(forward({**inputs, "media": jnp.asarray(x_t[None])}))[0]
        return x_t - noise * velocity

    base = estimate(clean)
    frames = builder.t
    video = [(frame == j) & (modality == VIDEO) for j in range(frames)]
    out = np.zeros((frames, frames))
    for k in range(frames):
        x0 = clean.copy()
        x0[video[k]] = swapped_in[video[k]]
        change = np.abs(estimate(x0) - base)[:, :builder.config.video_token_dim]
        out[k] = [change[video[j]].mean() for j in range(frames)]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/quickstart",
                        help="run directory with a trained transformer and cached latents")
    parser.add_argument("--checkpoint", type=int, default=None,
                        help="transformer checkpoint step (default: the latest)")
    parser.add_argument("--clips", type=int, default=6, help="validation clips to probe")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.6, 0.9],
                        help="noise levels t of every media token")
    args = report.parse(parser, argv, __file__)
    config, model, step = load_model(args.workdir, args.checkpoint)
    source = datasets.data_source(f"{args.workdir}/latents", "validation")
    if len(source) < 2 * args.clips:
        raise SystemExit(f"{args.workdir}/latents has {len(source)} validation clips; "
                         f"--clips {args.clips} needs {2 * args.clips}")
    builder = SequenceBuilder(config)
    forward = jax.jit(lambda inputs: model(inputs).velocity)
    frames = builder.t
    table = report.Table(["checkpoint", "noise t", "own frame", "adjacent frames",
                          "other frames", "adjacent / own"])
    for t in args.levels:
        changes = np.mean([
            frame_changes(forward, builder, datasets.decode(source[i]),
                          datasets.decode(source[args.clips + i]), t, seed=i)
            for i in range(args.clips)], axis=0)
        own = np.trace(changes) / frames
        adjacent = (np.trace(changes, 1) + np.trace(changes, -1)) / (2 * (frames - 1))
        other = (changes.sum() - np.trace(changes) - np.trace(changes, 1)
                 - np.trace(changes, -1)) / max(frames * frames - 3 * frames + 2, 1)
        table.add([step, f"{t:.2f}", f"{own:.4f}", f"{adjacent:.4f}", f"{other:.4f}",
                   f"{adjacent / own:.3f}"])
    report.publish(f"Context use ({args.workdir}, {args.clips} validation clips)", table, args)


if __name__ == "__main__":
    main()
