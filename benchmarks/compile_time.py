"""Compile time of the train step against depth, with the decoder blocks in a Python loop
and under one scan (`model.scan_layers`).

    o1 bench compile_time [--layers 4 8 16 32] [--config NAME] [--modes scan loop]
        [key=value ...]

For every depth and mode, builds the real train step (`o1.train.trainer.make_train_step`
with its optimizer) over a state and a batch that exist only as shapes (`nnx.eval_shape`,
`jax.eval_shape`: nothing is allocated, so a 1B model costs no memory) and times
`jax.jit(step).lower(state, batch)` and `.compile()`. The persistent compilation cache is
off, so every figure is a real compile. Without `--config` the model is about 1B parameters:
`small` at width 2048, 20 layers of 16 query and 8 KV heads of 128, MLP 5632.
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

# About 1B parameters on `small`'s data: the model o1 would train on one large GPU.
ONE_B = ["model.d_model=2048", "model.num_layers=20", "model.num_heads=16",
         "model.head_dim=128", "model.num_kv_heads=8", "model.mlp_dim=5632"]


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
    parser.add_argument("--config", default=None,
                        help="named config (default: the ~1B shape on small, see above)")
    parser.add_argument("--modes", nargs="+", choices=["scan", "loop"],
                        default=["scan", "loop"], help="how the blocks run")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="applied to every point, after the depth and the mode")
    args = report.parse(parser, argv, __file__)
    base = (args.config, []) if args.config else ("small", ONE_B)
    # Every compile here must be a real one, not a hit of a cache an earlier run filled.
    jax.config.update("jax_enable_compilation_cache", False)
    table = report.Table(["layers", "params", "blocks", "lower s", "compile s", "total s",
                          "CPU s"])
    totals: dict[str, list[float]] = {mode: [] for mode in args.modes}
    for layers in args.layers:
        for mode in args.modes:
            config = configs.get(base[0], [*base[1], f"model.num_layers={layers}",
                                           f"model.scan_layers={mode == 'scan'}",
                                           *args.overrides])
            r = compile_seconds(config)
            total = r["lower"] + r["compile"]
            totals[mode].append(total)
            table.add([layers, f"{r['params'] / 1e6:,.0f}M", mode, f"{r['lower']:.1f}",
                       f"{r['compile']:.1f}", f"{total:.1f}", f"{r['cpu']:.1f}"])
            print(f"{layers} layers, {mode}: {total:.1f} s", flush=True)
    growth = "; ".join(
        f"{mode}: {seconds[-1] / seconds[0]:.2f}x" for mode, seconds in totals.items()
        if len(seconds) > 1)
    report.publish("Compile time", table, args, note=(
        f"`{base[0]}`{' with ' + ' '.join(base[1]) if base[1] else ''}"
        f"{' and ' + ' '.join(args.overrides) if args.overrides else ''}: one train step "
        "(loss, gradients, optimizer update) lowered and compiled from shapes alone, the "
        "persistent cache off. Seconds are wall-clock; CPU s counts this process's CPU time "
        "alone (compiling uses several threads at times). Total from "
        f"{args.layers[0]} to {args.layers[-1]} layers: {growth or 'one depth'}."))


if __name__ == "__main__":
    main()
