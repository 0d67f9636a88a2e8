"""Compile time of the train step against depth, with the decoder blocks in a Python loop
and under one scan (`model.scan_layers`).

    o1 bench compile_time [--layers 4 8 16 32] [--config large] [--modes scan loop]
        [key=value ...]

For every depth and mode, builds the real train step (`o1.train.trainer.make_train_step`
with its optimizer) over a state and a batch that exist only as shapes (`nnx.eval_shape`,
`jax.eval_shape`: nothing is allocated, so a 1B model costs no memory) and times
`jax.jit(step).lower(state, batch)` and `.compile()`. The persistent compilation cache is
off, so every figure is a real compile. The default config, `large`, is the 951M-parameter
model at 20 layers.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from o1 import configs
from o1 import sharding as sh
from o1.benchmarks import report
from o1.benchmarks.train_step import random_batch
from o1.model import Model, num_params
from o1.train import trainer


def abstract_state(config) -> tuple:
    """(graphdef, {params, opt, step, key} as shapes) of `config`'s model and optimizer."""
    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: Model(config, nnx.Rngs(config.train.seed)))
    graphdef, params = nnx.split(model)
    tx = trainer.make_optimizer(config.train)
    state = {"params": params, "opt": jax.eval_shape(tx.init, params),
             "step": jax.ShapeDtypeStruct((), jnp.int32),
             "key": jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))}
    return graphdef, tx, state, num_params(model)


def compile_seconds(config) -> dict:
    """Wall seconds to lower and to compile one train step of `config`, the CPU seconds of
    both (this process's, so other work on a shared host does not count), and its
    parameter count."""
    graphdef, tx, state, params = abstract_state(config)
    batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                         random_batch(config))
    step = jax.jit(trainer.make_train_step(config, graphdef, tx))
    with jax.set_mesh(sh.make_mesh(config.mesh)):
        start, cpu = time.perf_counter(), time.process_time()
        lowered = step.lower(state, batch)
        lowered_at = time.perf_counter()
        lowered.compile()
        done = time.perf_counter()
    return {"params": params, "lower": lowered_at - start, "compile": done - lowered_at,
            "cpu": time.process_time() - cpu}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 8, 16, 32],
                        help="depths (model.num_layers) to compile")
    parser.add_argument("--config", default="large", help="named config")
    parser.add_argument("--modes", nargs="+", choices=["scan", "loop"],
                        default=["scan", "loop"], help="how the blocks run")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to every point, after the depth and the mode")
    args = report.parse(parser, argv, __file__)
    # Every compile here must be a real one, not a hit of a cache an earlier run filled.
    jax.config.update("jax_enable_compilation_cache", False)
    # A process's first compile also sets up the backend's compiler (seconds on a GPU): a
    # tiny step pays that before anything is timed.
    compile_seconds(configs.get("tiny"))
    table = report.Table(["layers", "params", "blocks", "lower s", "compile s", "total s",
                          "CPU s"])
    totals: dict[str, list[tuple[float, float]]] = {mode: [] for mode in args.modes}
    for layers in args.layers:
        for mode in args.modes:
            config = configs.get(args.config, [f"model.num_layers={layers}",
                                               f"model.scan_layers={mode == 'scan'}",
                                               *args.overrides])
            r = compile_seconds(config)
            total = r["lower"] + r["compile"]
            totals[mode].append((total, r["cpu"]))
            table.add([layers, f"{r['params'] / 1e6:,.0f}M", mode, f"{r['lower']:.1f}",
                       f"{r['compile']:.1f}", f"{total:.1f}", f"{r['cpu']:.1f}"])
            print(f"{layers} layers, {mode}: {total:.1f} s", flush=True)
    growth = "; ".join(
        f"{mode} {s[-1][0] / s[0][0]:.2f}x (CPU {s[-1][1] / s[0][1]:.2f}x)"
        for mode, s in totals.items() if len(s) > 1)
    report.publish("Compile time", table, args, note=(
        f"`{args.config}`{' with ' + ' '.join(args.overrides) if args.overrides else ''}: "
        "one train step (loss, gradients, optimizer update) lowered and compiled from shapes "
        "alone, the "
        "persistent cache off, after an untimed warm-up compile. Seconds are wall-clock; CPU s "
        "counts this process's CPU time alone (compiling uses several threads at times). "
        "Total from "
        f"{args.layers[0]} to {args.layers[-1]} layers: {growth or 'one depth'}."))


if __name__ == "__main__":
    main()
