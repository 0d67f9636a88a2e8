"""The training loop against its parts: the input pipeline, the host's ceiling, the bare step.

    o1 bench train_loop --workdir W [--seconds 60] [--workers 0 2] [key=value ...]

On the latent cache of a trained workdir (`W/latents`, its `config.json` plus the overrides),
in one process and on a scratch copy of the workdir, so `W` is never written:

- pipeline: batches per second of the loader alone (read, draw, lay out, pack, count the
  cost), for each `--workers` count (`loader.worker_count`);
- host ceiling: the real `o1 train` loop (loader, batches placed on the devices by its
  thread, metrics, progress bar, checkpoint at the end) with the device step replaced by a
  jitted no-op, in steps per second: the fastest the host can feed any device;
- real loop / bare step: the same loop with the real step, against the jitted step alone
  repeated on one batch already on the devices. The loop's figure is the median of its
  logged windows (steps/s); validation and periodic checkpoints are left out of both.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from o1 import config as config_lib
from o1 import flops
from o1.benchmarks import report
from o1.benchmarks.train_step import time_steps
from o1.train import loop, trainer


def scratch_workdir(workdir: pathlib.Path, config: config_lib.Config) -> pathlib.Path:
    """A temporary workdir that shares `workdir`'s latents and holds `config`."""
    if not (workdir / "latents").exists():
        raise config_lib.ConfigError(f"{workdir} has no latent cache; run `o1 data encode "
                                     f"--workdir {workdir} --data DATA` first")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="o1-train-loop-"))
    (scratch / "latents").symlink_to((workdir / "latents").resolve())
    (scratch / "config.json").write_text(config.to_json())
    return scratch


def pipeline_rate(workdir: pathlib.Path, config: config_lib.Config, seconds: float) -> float:
    """Batches per second of the training loader alone, after its first batch."""
    batches = iter(trainer.make_loader(workdir, config))
    try:
        next(batches)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            next(batches)
            count += 1
        return count / (time.perf_counter() - start)
    finally:
        batches.close()


def loop_rate(workdir: pathlib.Path, config: config_lib.Config, steps: int | None,
              seconds: float = 0.0) -> tuple[float, float | None]:
    """(median logged steps/s of the real loop, seconds of the bare step or None).

    With `steps`, the loop runs that many steps of a jitted no-op; with None, the bare step
    is timed first and the loop runs the real step for about `seconds` (12 steps at least).
    """
    stage = trainer.make_stage(workdir, config, progress=False)
    stage.validate = None
    placed = stage.loader.iterate(stage.place, ahead=1)
    try:
        batch = next(placed)
    finally:
        placed.close()
    bare_s = None
    with jax.set_mesh(stage.mesh):
        if steps is None:
            stage.state, _, bare_s, _ = time_steps(stage.step, stage.state, batch, 10)
            steps = max(int(seconds / bare_s), 12)
        else:
            metrics = jax.eval_shape(stage.step, stage.state, batch)[1]

            def no_op(state, batch):  # the loop jits it, the state donated
                return state, jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics)

            stage.step = no_op
    stage.steps = stage.checkpoint_every = steps
    stage.log_every = max(steps // 10, 3)
    loop.fit(stage, loop.StopRequest())
    rates = [row["steps_per_s"] for row in map(json.loads, (workdir / "metrics.jsonl").open())
             if row.get("stage") == "train" and "steps_per_s" in row]
    (workdir / "metrics.jsonl").unlink()
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
    shutil.rmtree(workdir / "tb", ignore_errors=True)
    return statistics.median(rates), bare_s


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=pathlib.Path, required=True,
                        help="a workdir with config.json and latents/ (never written)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="about how long the real loop runs (default 60)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                        help="loader.worker_count values to measure (default 0 2); the real "
                             "loop uses the first")
    parser.add_argument("--no-real", action="store_true",
                        help="measure the pipeline and the host ceiling only")
    parser.add_argument("--ceiling-steps", type=int, default=600,
                        help="steps of the no-op loop per worker count (default 600)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to the workdir's config, e.g. train.batch_size=32")
    args = report.parse(parser, argv, __file__)
    path = args.workdir / "config.json"
    if not path.exists():
        raise SystemExit(f"o1 bench train_loop: {path} does not exist; pass a workdir that "
                         f"`o1 tokenizers train` and `o1 data encode` have filled")
    config = config_lib.apply_overrides(config_lib.load(path), args.overrides)
    scratch = scratch_workdir(args.workdir, config)
    table = report.Table(["config", "rows x len", "workers", "pipeline batches/s",
                          "host ceiling steps/s", "bare step s", "real loop steps/s",
                          "loop / bare", "peak GFLOP/s"])
    name = " ".join([config.name, *args.overrides])
    shape = f"{config.train.batch_size} x {config.seq_len}"
    try:
        for workers in args.workers:
            with_workers = config_lib.apply_overrides(config, [f"loader.worker_count={workers}"])
            pipe = pipeline_rate(scratch, with_workers, min(10.0, args.seconds / 4))
            ceiling, _ = loop_rate(scratch, with_workers, args.ceiling_steps)
            table.add([name, shape, workers, f"{pipe:.1f}", f"{ceiling:.1f}", "", "", "", ""])
            print(f"{workers} workers: pipeline {pipe:.1f} batches/s, host ceiling "
                  f"{ceiling:.1f} steps/s", flush=True)
        if not args.no_real:
            workers = args.workers[0]
            with_workers = config_lib.apply_overrides(config,
                                                      [f"loader.worker_count={workers}"])
            real, bare_s = loop_rate(scratch, with_workers, None, args.seconds)
            peak, source = flops.peak_flops(config)
            table.add([name, shape, workers, "", "", f"{bare_s:.4f}", f"{real:.3f}",
                       f"{real * bare_s:.1%}", f"{peak / 1e9:,.0f} ({source})"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.publish("Training loop", table, args, note=(
        "Pipeline: the loader alone. Host ceiling: the real loop with a no-op device step "
        "(median of its logged windows). Real loop: the same with the real step, against the "
        "bare jitted step on one batch already on the devices; loop / bare = real steps/s x "
        "bare step seconds. Validation and periodic checkpoints are left out."))


if __name__ == "__main__":
    main()
