"""Scaling: train-step time and memory against clip length and model width, next to the
analytic FLOPs split into matmuls and attention, so a reader sees where attention's quadratic
term takes over.

    o1 bench scaling [--config quickstart] [--seconds 1 2 4 8] [--widths 128 256 512]
        [--steps 2] [key=value ...]

Every point is one config: the base config with `data.seconds` (at the base width) or
`model.d_model` / `model.mlp_dim` = 4 x width (at the base clip length) changed; rows hold
one example. Memory is XLA's own account of the compiled step (arguments + temporaries),
the figure that must fit on a device; the analytic FLOPs come from o1/flops.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax

from o1 import configs, flops, sequence
from o1 import sharding as sh
from o1.benchmarks import report
from o1.benchmarks.train_step import random_batch, time_steps
from o1.train import trainer


def point(name: str, overrides: list[str], steps: int) -> dict:
    config = configs.get(name, overrides)
    mesh = sh.make_mesh(config.mesh)
    _, state, step = trainer.init_state(config, mesh)
    batch = random_batch(config)
    tokens = int((batch["segment_ids"] > 0).sum())
    pairs = sequence.visible_keys(batch["segment_ids"], batch["block"], batch["modality"])
    matmul = 3.0 * flops.matmul_flops_per_token(config) * tokens
    attention = 3.0 * flops.attention_flops_per_pair(config) * pairs
    with jax.set_mesh(mesh):
        global_batch = sh.global_batch(batch, mesh)
        memory = step.lower(state, global_batch).compile().memory_analysis()
        _, _, seconds, _ = time_steps(step, state, global_batch, steps)
    used = memory.argument_size_in_bytes + memory.temp_size_in_bytes if memory else float("nan")
    return {"seq_len": config.seq_len, "tokens": tokens, "seconds": seconds,
            "matmul": matmul, "attention": attention, "bytes": used,
            "frames": config.num_frames}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="quickstart")
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--widths", type=int, nargs="*", default=[128, 256, 512])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per point")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to every point (default: train.batch_size=2)")
    args = report.parse(parser, argv, __file__)
    base = args.overrides or ["train.batch_size=2"]
    base = [*base, "sequence.examples_per_row=1"]
    table = report.Table(["point", "frames", "row tokens", "step s", "matmul GFLOP",
                          "attention GFLOP", "attention share", "XLA memory GB",
                          "ms per GFLOP"])
    points = [(f"clip {s:g} s", [f"data.seconds={s}"]) for s in args.seconds]
    points += [(f"width {w}", [f"model.d_model={w}", f"model.mlp_dim={4 * w}"])
               for w in args.widths]
    for label, extra in points:
        r = point(args.config, [*base, *extra], args.steps)
        total = r["matmul"] + r["attention"]
        table.add([label, r["frames"], r["seq_len"], f"{r['seconds']:.3f}",
                   f"{r['matmul'] / 1e9:,.1f}", f"{r['attention'] / 1e9:,.1f}",
                   f"{r['attention'] / total:.1%}", f"{r['bytes'] / 1e9:.2f}",
                   f"{r['seconds'] * 1e3 / (total / 1e9):.2f}"])
    report.publish("Scaling", table, args, note=(
        f"Base `{args.config}` with {' '.join(base)}; clip points at the base width, width "
        "points at the base clip length (mlp_dim = 4 x width, heads unchanged). Training FLOPs "
        "= 3 x forward; attention counts only the (query, key) pairs the block-causal mask "
        "allows. Mean of the timed steps after a compiling one."))


if __name__ == "__main__":
    main()
