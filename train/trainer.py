"""`o1 train`: the unified transformer on a workdir's latent cache, sharded and resumable.

    o1 train --workdir runs/quickstart [--config quickstart] [key=value ...]

One loop, in sections: set-up (mesh, model created in its sharding, optimizer), data (grain
over `<workdir>/latents`, sequences built per example), the jitted train step (donated state,
gradient accumulation, non-finite updates skipped), checkpoints (orbax, async, keep last N:
parameters, optimizer, step, RNG and every process's data-iterator state), validation per
task, and metrics (TensorBoard, `metrics.jsonl`, a progress bar).

A run started again resumes from its latest committed checkpoint and takes exactly the steps an
uninterrupted run would have taken: the step's random key is derived from (seed, step) and
the data iterator's state is part of the checkpoint. SIGTERM or Ctrl-C saves and exits.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm import tqdm

from o1 import config as config_lib
from o1 import flops, losses, sequence
from o1 import sharding as sh
from o1.batch import only_batch
from o1.config import TASKS, Config, ConfigError, TrainConfig
from o1.model import Model
from o1.train import datasets
from o1.train.loop import Preempted, StopRequest
from o1.train.metrics import MetricWriter

log = logging.getLogger(__name__)

# Sections the latent cache depends on: they must match the tokenizer stage's config.
TOKENIZER_SECTIONS = ("data", "text", "video_vae", "audio")
# Sections a resumed run may not change (the checkpoint would not fit or mean something else).
MODEL_SECTIONS = ("model", "sequence", "loss")


# ---------------------------------------------------------------------------------------------
# Set-up: config checks, optimizer.
# ---------------------------------------------------------------------------------------------

def check_workdir(workdir: pathlib.Path, config: Config) -> None:
    """Refuses a config the workdir's latents or checkpoints were not made with."""
    path = workdir / "config.json"
    if not path.exists():
        raise ConfigError(f"{workdir} has no config.json; train the tokenizers first: "
                          f"`o1 tokenizers train --workdir {workdir} --data DATA`")
    if not (workdir / "latents").exists():
        raise ConfigError(f"{workdir} has no latent cache; run "
                          f"`o1 data encode --workdir {workdir} --data DATA` first")
    wrong = config_lib.differences(config_lib.load(path), config, TOKENIZER_SECTIONS)
    if wrong:
        raise ConfigError(f"the latents in {workdir} were made with another tokenizer config "
                          f"({'; '.join(wrong)}); use the workdir's config (omit --config)")
    run = workdir / "checkpoints" / "config.json"
    if run.exists():
        wrong = config_lib.differences(config_lib.load(run), config, MODEL_SECTIONS)
        if wrong:
            raise ConfigError(f"{workdir}/checkpoints holds a run with another model config "
                              f"({'; '.join(wrong)}); resume with the same settings or use a "
                              f"new --workdir")
    if jax.process_index() == 0:
        run.parent.mkdir(parents=True, exist_ok=True)
        tmp = run.with_name(".config.json.tmp")
        tmp.write_text(config.to_json())
        os.replace(tmp, run)


def schedule(t: TrainConfig) -> optax.Schedule:
    warmup = min(t.warmup_steps, max(t.steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        0.0, t.learning_rate, warmup, max(t.steps, warmup + 1), t.learning_rate * t.min_lr_ratio)


def _names(path) -> list[str]:
    names = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    return [n for n in names if n != "value"]


def _matrices(params):
    """True for weight matrices (decayed); False for norms, scales and adaLN's per-block
    offsets, which are biases however many axes they have."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x.ndim >= 2 and _names(path)[-1] != "adaln_offset", params)


def _muon_dimensions(params):
    """Muon's matrix view of the decoder blocks' weights (model inputs reduced, outputs kept);
    None (the AdamW path) for the embeddings, heads, noise MLP, norms, scales and offsets."""
    def dims(path, x):
        names = _names(path)
        if "blocks" not in names or x.ndim < 2 or names[-1] == "adaln_offset":
            return None
        if names[-1] == "o":  # [heads, head_dim, d]
            return optax.contrib.MuonDimensionNumbers((0, 1), (2,))
        return optax.contrib.MuonDimensionNumbers((0,), tuple(range(1, x.ndim)))
    return jax.tree_util.tree_map_with_path(dims, params)


def make_optimizer(t: TrainConfig) -> optax.GradientTransformation:
    """AdamW or Muon (`train.optimizer`; decay on matrices only) after global-norm clipping;
    a step whose gradients are not finite leaves parameters and moments untouched and is
    counted."""
    if t.optimizer == "muon":
        opt = optax.contrib.muon(
            schedule(t), weight_decay=t.weight_decay, weight_decay_mask=_matrices,
            adam_b1=t.b1, adam_b2=t.b2, adam_weight_decay=t.weight_decay,
            muon_weight_dimension_numbers=_muon_dimensions, consistent_rms=0.2)
    else:
        opt = optax.adamw(schedule(t), b1=t.b1, b2=t.b2, weight_decay=t.weight_decay,
                          mask=_matrices)
    tx = optax.chain(optax.clip_by_global_norm(t.grad_clip), opt)
    return optax.apply_if_finite(tx, max_consecutive_errors=2 ** 30)


# ---------------------------------------------------------------------------------------------
# Data: grain over the latent cache, one sequence per example, packed rows.
# ---------------------------------------------------------------------------------------------

class _Build(grain.transforms.RandomMap):
    """A cached example -> a built sequence of a task drawn from the mixture."""

    def __init__(self, builder: sequence.SequenceBuilder):
        self.builder = builder

    def random_map(self, example, rng: np.random.Generator):
        return self.builder.build(example, self.builder.sample_task(rng), rng)


def rows_per_process(config: Config) -> int:
    count = jax.process_count()
    if config.train.batch_size % count:
        raise ConfigError(f"train.batch_size ({config.train.batch_size}) must divide over "
                          f"{count} processes; try train.batch_size="
                          f"{-(-config.train.batch_size // count) * count}")
    return config.train.batch_size // count


def make_loader(workdir: pathlib.Path, config: Config) -> grain.DataLoader:
    """Endless, shuffled, process-sharded batches of packed rows from the train split."""
    builder = sequence.SequenceBuilder(config)
    per_row = config.sequence.examples_per_row
    source = datasets.data_source(workdir / "latents", "train")
    sampler = grain.samplers.IndexSampler(
        num_records=len(source), shuffle=True, num_epochs=None, seed=config.train.seed,
        shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True))

    def pack(examples):
        rows = [examples[i:i + per_row] for i in range(0, len(examples), per_row)]
        return builder.batch(rows, config.seq_len)

    return grain.DataLoader(
        data_source=source, sampler=sampler,
        operations=[_Build(builder),
                    grain.transforms.Batch(rows_per_process(config) * per_row,
                                           drop_remainder=True, batch_fn=pack)],
        worker_count=config.loader.worker_count)


def validation_batches(workdir: pathlib.Path, config: Config) -> dict[str, list[dict]]:
    """Per task with a non-zero weight, `eval_batches` fixed batches of this process's rows
    of the validation split (captions never dropped, noise levels seeded per example)."""
    builder = sequence.SequenceBuilder(dataclasses.replace(
        config, sequence=dataclasses.replace(config.sequence, caption_dropout=0.0)))
    source = datasets.data_source(workdir / "latents", "validation")
    per_row, rows = config.sequence.examples_per_row, rows_per_process(config)
    per_batch = config.train.batch_size * per_row
    first = jax.process_index() * rows * per_row
    out = {}
    for t, task in enumerate(TASKS):
        if config.sequence.task_weights[task] <= 0:
            continue
        out[task] = []
        for b in range(config.train.eval_batches):
            ids = [(b * per_batch + first + i) % len(source) for i in range(rows * per_row)]
            built = [builder.build(source[i], task, np.random.default_rng(
                (config.train.seed, t, b, i))) for i in ids]
            out[task].append(builder.batch(
                [built[r:r + per_row] for r in range(0, len(built), per_row)], config.seq_len))
    return out


# ---------------------------------------------------------------------------------------------
# The train step.
# ---------------------------------------------------------------------------------------------

def make_train_step(config: Config, graphdef, tx) -> Callable:
    """(state, batch) -> (state, metrics); state = {params, opt, step, key}."""
    accum = config.train.grad_accum
    lr = schedule(config.train)

    def loss_of(params, batch, key, denom):
        return losses.loss_fn(config, nnx.merge(graphdef, params), batch, key, denom)

    def step(state, batch):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["key"]), state["step"])
        denom = losses.denominators(batch)
        # Micro-batch i takes rows i, i + accum, ...: every device keeps a share of each.
        micro = jax.tree.map(lambda x: jnp.swapaxes(
            x.reshape(x.shape[0] // accum, accum, *x.shape[1:]), 0, 1), batch)
        grad_fn = jax.value_and_grad(loss_of, has_aux=True)

        def accumulate(carry, xs):
            grads, loss, sums, counts = carry
            mb, i = xs
            mb = jax.tree.map(lambda x: sh.shard(x, sh.BATCH, *(None,) * (x.ndim - 1)), mb)
            (part, aux), g = grad_fn(state["params"], mb, jax.random.fold_in(key, i), denom)
            return (jax.tree.map(jnp.add, grads, g), loss + part, sums + aux["sums"],
                    counts + aux["counts"]), None

        zeros = jax.tree.map(jnp.zeros_like, state["params"])
        grid = jnp.zeros((len(TASKS), len(losses.MODALITIES)), jnp.float32)
        (grads, loss, sums, counts), _ = jax.lax.scan(
            accumulate, (zeros, jnp.zeros((), jnp.float32), grid, grid),
            (micro, jnp.arange(accum)))
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        # Skipped steps do not advance the optimizer's schedule.
        applied = state["step"] - state["opt"].total_notfinite
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": lr(applied),
                   "skipped": opt.total_notfinite, "sums": sums, "counts": counts}
        return {"params": params, "opt": opt, "step": state["step"] + 1,
                "key": state["key"]}, metrics

    return step


def init_state(config: Config, mesh) -> tuple[Any, dict, Callable]:
    """The model created in its sharding on `mesh`, its optimizer state, and the jitted train
    step: (graphdef, state = {params, opt, step, key}, step(state, batch) -> (state, metrics)).
    The step donates `state`; call it under `jax.set_mesh(mesh)` with a global batch."""
    t = config.train
    model = sh.create_model(lambda: Model(config, nnx.Rngs(t.seed)), mesh)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(t)
    with jax.set_mesh(mesh):
        state = {"params": params, "opt": jax.jit(tx.init)(params),
                 "step": jnp.zeros((), jnp.int32),
                 "key": jax.random.key_data(jax.random.key(t.seed))}
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = jax.jit(make_train_step(config, graphdef, tx), donate_argnums=0,
                   in_shardings=(shardings, None), out_shardings=(shardings, None))
    return graphdef, state, step


def make_eval_step(config: Config, graphdef) -> Callable:
    def evaluate(params, batch):
        denom = losses.denominators(batch)
        key = jax.random.key(config.train.seed + 1)  # the same noise at every evaluation
        _, aux = losses.loss_fn(config, nnx.merge(graphdef, params), batch, key, denom)
        return aux["sums"], aux["counts"]
    return evaluate


# ---------------------------------------------------------------------------------------------
# Checkpoints.
# ---------------------------------------------------------------------------------------------

def checkpoint_manager(workdir: pathlib.Path, config: Config) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        (workdir / "checkpoints").resolve(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.train.keep_checkpoints, create=True,
            enable_async_checkpointing=True, cleanup_tmp_directories=True))


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        tree)


# ---------------------------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Window:
    """Throughput over the steps since the last log line."""

    start: float
    steps: int = 0
    tokens: int = 0
    flops: float = 0.0


def train(workdir: str | os.PathLike, config: Config, stop: StopRequest | None = None,
          progress: bool = True) -> dict[str, float]:
    """Trains (or resumes) the transformer in `workdir`; returns the last metrics.

    Raises:
      ConfigError: the config does not fit the workdir, the devices or the processes.
      Preempted: `stop` was requested; a checkpoint of the last finished step was saved.
    """
    workdir = pathlib.Path(workdir)
    stop = stop or StopRequest()
    t = config.train
    check_workdir(workdir, config)
    mesh = sh.make_mesh(config.mesh)
    if (t.batch_size // t.grad_accum) % (mesh.shape["data"] * mesh.shape["fsdp"]):
        raise ConfigError(
            f"a micro-batch of train.batch_size / train.grad_accum = "
            f"{t.batch_size // t.grad_accum} rows must split over the "
            f"{mesh.shape['data'] * mesh.shape['fsdp']} devices of mesh axes data x fsdp")

    graphdef, state, train_step = init_state(config, mesh)
    eval_step = jax.jit(make_eval_step(config, graphdef))

    loader = make_loader(workdir, config)
    batches: Iterator = iter(loader)
    manager = checkpoint_manager(workdir, config)
    start = manager.latest_step() or 0
    if start:
        restored = manager.restore(start, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(state)),
            loader=grain.checkpoint.CheckpointRestore(batches)))
        state = restored["state"]
        log.info("resumed from step %d of %s", start, workdir / "checkpoints")

    def save(step: int) -> None:
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            loader=grain.checkpoint.CheckpointSave(batches)))

    writer = MetricWriter(workdir, "train") if jax.process_index() == 0 else None
    val_writer = MetricWriter(workdir, "val") if jax.process_index() == 0 else None
    validation = validation_batches(workdir, config)
    peak, peak_source = flops.peak_flops(config)
    log.info("peak %.3g FLOP/s (%s); %d devices, mesh %s", peak, peak_source,
             jax.device_count(), dict(mesh.shape))
    if progress and jax.process_index() == 0:
        tqdm.write(f"o1 train: {len(jax.devices())} devices, mesh {dict(mesh.shape)}, peak "
                   f"{peak / 1e9:.1f} GFLOP/s ({peak_source})"
                   + (f"; resuming at step {start}" if start else ""))

    def run_validation(step: int) -> dict[str, float]:
        values = {}
        with jax.set_mesh(mesh):
            for batches_of_task in validation.values():
                sums = counts = 0.0
                for batch in batches_of_task:
                    s, c = eval_step(state["params"], sh.global_batch(only_batch(batch), mesh))
                    sums, counts = sums + np.asarray(s), counts + np.asarray(c)
                values.update({k: v for k, v in losses.report(sums, counts).items()
                               if not k.startswith("all/")})
        if val_writer:
            val_writer.write(step, values)
        return values

    last: dict[str, float] = {}
    # smoothing=0: the rate (and ETA) averaged since the start; steps are dispatched ahead and
    # complete in bursts at each metrics fetch, which tqdm's moving average misreads.
    bar = tqdm(range(start, t.steps), initial=start, total=t.steps, desc="train", unit="step",
               dynamic_ncols=True, smoothing=0.0,
               disable=not progress or jax.process_index() != 0)
    window = None
    try:
        for step in bar:
            batch = next(batches)
            with jax.set_mesh(mesh):
                state, metrics = train_step(state, sh.global_batch(only_batch(batch), mesh))
            done = step + 1
            if window is None:  # the first step compiles: time from its end
                jax.block_until_ready(metrics)
                window = _Window(time.perf_counter())
            else:
                window.steps += 1
                window.tokens += int((batch["segment_ids"] > 0).sum()) * jax.process_count()
                window.flops += flops.train_flops(config, batch) * jax.process_count()
            if done % t.log_every == 0 or done == t.steps:
                host = jax.device_get(metrics)
                last = {"loss": float(host["loss"]), "grad_norm": float(host["grad_norm"]),
                        "lr": float(host["lr"]), "skipped": float(host["skipped"]),
                        **losses.report(host["sums"], host["counts"])}
                now = time.perf_counter()
                if window.steps:
                    seconds = now - window.start
                    last.update(step_time=seconds / window.steps,
                                steps_per_s=window.steps / seconds,
                                tokens_per_s=window.tokens / seconds,
                                mfu=window.flops / seconds / peak)
                window = _Window(now)
                if writer:
                    writer.write(done, last)
                bar.set_postfix({k: f"{last[k]:.4g}" for k in
                                 ("loss", "steps_per_s", "mfu") if k in last}, refresh=False)
            if done % t.eval_every == 0 or done == t.steps:
                values = run_validation(done)
                if progress and jax.process_index() == 0:
                    tqdm.write(f"step {done}: validation " + ", ".join(
                        f"{k} {v:.4f}" for k, v in sorted(values.items())))
            if done % t.checkpoint_every == 0 or done == t.steps or stop.requested:
                save(done)
            if stop.requested and done < t.steps:
                manager.wait_until_finished()
                raise Preempted(f"training stopped at step {done}/{t.steps}; checkpoint saved "
                                f"in {workdir / 'checkpoints'}, run the same command again to "
                                f"resume")
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()
        for w in (writer, val_writer):
            if w:
                w.close()
    return last
