"""Train-step speed of the unified transformer: step time, tokens/s and MFU.

    uv run python benchmarks/train_step.py --config quickstart [--steps 10] [key=value ...]

Builds one batch of the config's shape from random latents (every task of the mixture, so
the attention pattern is the real one), times `--steps` jitted train steps after a warm-up
step, and divides the analytic FLOPs (o1.flops) by the step time and the peak: the
datasheet's on a GPU, a matmul measured in the same run on CPU. Prints one table row.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from flax import nnx

from o1 import configs, flops, sequence
from o1 import sharding as sh
from o1.config import TASKS
from o1.model import num_params
from o1.train import trainer


def random_batch(config, seed: int = 0) -> dict:
    builder = sequence.SequenceBuilder(config)
    rng = np.random.default_rng(seed)
    weights = config.sequence.task_weights
    tasks = [t for t in TASKS if weights[t] > 0]
    per_row = config.sequence.examples_per_row
    rows = []
    for r in range(config.train.batch_size):
        row = []
        for e in range(per_row):
            example = sequence.random_example(config, r * per_row + e,
                                              config.sequence.max_text_len)
            row.append(builder.build(example, tasks[(r * per_row + e) % len(tasks)], rng))
        rows.append(row)
    return trainer.model_batch(builder.batch(rows, config.seq_len))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="quickstart")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    config = configs.get(args.config, args.overrides)
    mesh = sh.make_mesh(config.mesh)
    graphdef, state, step = trainer.init_state(config, mesh)
    batch = random_batch(config)
    step_flops = flops.train_flops(config, batch)
    tokens = int((batch["segment_ids"] > 0).sum())
    with jax.set_mesh(mesh):
        global_batch = sh.global_batch(batch, mesh)
        start = time.perf_counter()
        state, metrics = step(state, global_batch)
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.steps):
            state, metrics = step(state, global_batch)
        jax.block_until_ready(metrics)
        seconds = (time.perf_counter() - start) / args.steps
    # The CPU peak is measured right after the timed steps, so both see the same machine load.
    peak, source = flops.peak_flops(config)
    params = num_params(nnx.merge(graphdef, state["params"]))
    print("| config | params | devices | rows x len | dtype | step s | tokens/s | TFLOP/step "
          "| peak GFLOP/s | MFU |")
    print(f"| {args.config} {' '.join(args.overrides)} | {params / 1e6:.1f}M | "
          f"{jax.device_count()} {jax.devices()[0].platform} | {config.train.batch_size} x "
          f"{config.seq_len} | {config.model.dtype} | {seconds:.3f} | {tokens / seconds:,.0f} | "
          f"{step_flops / 1e12:.3f} | {peak / 1e9:,.0f} ({source}) | "
          f"{step_flops / seconds / peak:.1%} |")
    print(f"(first step with compilation: {compile_s:.1f} s; loss {float(metrics['loss']):.3f})")


if __name__ == "__main__":
    main()
