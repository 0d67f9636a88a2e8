"""Train-step speed of the unified transformer: step time, tokens/s and MFU.

    o1 bench train_step [--configs tiny quickstart small] [--steps 5] [key=value ...]

Builds one batch of the config's shape from random latents (every task of the mixture, so
the attention pattern is the real one), times `--steps` jitted train steps after a warm-up
step, and divides the analytic FLOPs (o1.flops) by the step time and the peak: the
datasheet's on a GPU, a matmul measured in the same run on CPU. Prints one table row.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from o1 import configs, flops, sequence
from o1 import sharding as sh
from o1.batch import only_batch
from o1.benchmarks import report
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
    return only_batch(builder.batch(rows, config.seq_len))


def time_steps(step, state, batch, steps: int) -> tuple[dict, float, float, dict]:
    """(the state after them, seconds of the first, compiling step, mean seconds of `steps`
    more, their last metrics). `state` is donated to the first step."""
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    return state, compile_s, (time.perf_counter() - start) / steps, metrics


def measure(name: str, overrides: list[str], steps: int) -> dict:
    """Times `steps` train steps of config `name` after one compiling step."""
    config = configs.get(name, overrides)
    mesh = sh.make_mesh(config.mesh)
    graphdef, state, step = trainer.init_state(config, mesh)
    batch = random_batch(config)
    step_flops = flops.train_flops(config, batch)
    tokens = int((batch["segment_ids"] > 0).sum())
    with jax.set_mesh(mesh):
        state, compile_s, seconds, metrics = time_steps(
            step, state, sh.global_batch(batch, mesh), steps)
    # The CPU peak is measured right after the timed steps, so both see the same machine load.
    peak, source = flops.peak_flops(config)
    params = num_params(nnx.merge(graphdef, state["params"]))
    stats = jax.local_devices()[0].memory_stats() or {}  # None on CPU
    peak_gb = stats.get("peak_bytes_in_use", 0) / 2**30
    return {"config": " ".join([name, *overrides]), "params": params,
            "rows": config.train.batch_size, "seq_len": config.seq_len,
            "dtype": config.model.dtype, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "flops": step_flops, "peak": peak, "source": source,
            "mfu": step_flops / seconds / peak, "compile_s": compile_s, "peak_gb": peak_gb,
            "loss": float(metrics["loss"])}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny", "quickstart", "small"],
                        help="named configs to time, one after another")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per config")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to every config, e.g. train.batch_size=2")
    args = report.parse(parser, argv, __file__)
    table = report.Table(["config", "params", "devices", "rows x len", "dtype", "step s",
                          "tokens/s", "TFLOP/step", "peak GFLOP/s", "MFU", "compile s",
                          "device GB"])
    for name in args.configs:
        try:
            r = measure(name, args.overrides, args.steps)
        except jax.errors.JaxRuntimeError as e:
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            # A row that says so, instead of no row: e.g. `small` at batch 32 on a 24 GB CPU.
            table.add([" ".join([name, *args.overrides]), "", "", "", "", "out of memory: "
                       + str(e).split("RESOURCE_EXHAUSTED:")[-1].strip()[:80], "", "", "",
                       "", "", ""])
            continue
        table.add([r["config"], f"{r['params'] / 1e6:.1f}M",
                   f"{jax.device_count()} {jax.devices()[0].platform}",
                   f"{r['rows']} x {r['seq_len']}", r["dtype"], f"{r['seconds']:.3f}",
                   f"{r['tokens_per_s']:,.0f}", f"{r['flops'] / 1e12:.3f}",
                   f"{r['peak'] / 1e9:,.0f} ({r['source']})", f"{r['mfu']:.1%}",
                   f"{r['compile_s']:.1f}", f"{r['peak_gb']:.1f}" if r["peak_gb"] else ""])
    report.publish("Training step", table, args, note=(
        f"Mean of {args.steps} steps after a compiling one, on a batch of random latents with "
        "every task of the mixture. MFU = analytic model FLOPs (o1/flops.py) per second over "
        "the peak: the datasheet's on a GPU, a jitted matmul measured right after on CPU."))


if __name__ == "__main__":
    main()
