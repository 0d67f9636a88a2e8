"""`o1 train`: the unified transformer on a workdir's latent cache, sharded and resumable.

    o1 train --workdir runs/quickstart [--config quickstart] [key=value ...]

What is particular to the transformer, in sections: set-up (config checks, mesh, model created
in its sharding, optimizer), data (sequences built per example of `<workdir>/latents`, packed
into rows), the train step (gradient accumulation, non-finite updates skipped), validation per
task, and the metrics of a step (per-task losses, tokens and FLOPs for MFU). The loop itself
(resume, checkpoints, metrics, SIGTERM) is `o1.train.loop`'s, shared with the tokenizers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from collections.abc import Callable
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from o1 import config as config_lib
from o1 import flops, losses, sequence
from o1 import sharding as sh
from o1.batch import only_batch
from o1.config import TASKS, Config, ConfigError, TrainConfig
from o1.model import Model
from o1.train import datasets, loader, loop, optim
from o1.train.loop import StopRequest

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
    return optim.schedule(t.learning_rate, t.steps, min(t.warmup_steps, max(t.steps - 1, 0)),
                          t.min_lr_ratio)


def _matrix_axes(names: list[str], x) -> int:
    """Axes of one weight: a decoder block's parameters carry a leading layer axis."""
    return x.ndim - 1 if "blocks" in names else x.ndim


def _matrices(params):
    """True for weight matrices (decayed); False for norms, scales and adaLN's per-block
    offsets, which are biases however many axes they have."""
    def decayed(path, x):
        names = optim.path_names(path)
        return _matrix_axes(names, x) >= 2 and names[-1] != "adaln_offset"
    return jax.tree_util.tree_map_with_path(decayed, params)


def _muon_dimensions(params):
    """Muon's matrix view of the decoder blocks' weights (model inputs reduced, outputs kept;
    the layer axis in front is a batch axis: each layer is orthogonalized on its own); None
    (the AdamW path) for the embeddings, heads, noise MLP, norms, scales and offsets."""
    def dims(path, x):
        names = optim.path_names(path)
        if "blocks" not in names or _matrix_axes(names, x) < 2 or names[-1] == "adaln_offset":
            return None
        if names[-1] == "o":  # [layers, heads, head_dim, d]
            return optax.contrib.MuonDimensionNumbers((1, 2), (3,))
        return optax.contrib.MuonDimensionNumbers((1,), tuple(range(2, x.ndim)))
    return jax.tree_util.tree_map_with_path(dims, params)


def make_optimizer(t: TrainConfig) -> optax.GradientTransformation:
    """AdamW or Muon (`train.optimizer`; decay on matrices only) after global-norm clipping;
    a step whose gradients are not finite leaves parameters and moments untouched and is
    counted. Muon's updates are scaled to AdamW's RMS, so one learning rate serves both."""
    return optim.make_optimizer(
        t.optimizer, schedule(t), b1=t.b1, b2=t.b2, weight_decay=t.weight_decay,
        decay_mask=_matrices, muon_dimensions=_muon_dimensions, consistent_rms=0.2,
        clip=t.grad_clip, skip_non_finite=True)


# ---------------------------------------------------------------------------------------------
# Data: grain over the latent cache, one sequence per example, packed rows.
# ---------------------------------------------------------------------------------------------

class _Draw(grain.transforms.RandomMap):
    """A prepared example (`SequenceBuilder.prepare`) -> (it, the draws that lay it out for
    a task drawn from the mixture); the batch function lays out a whole batch at once."""

    def __init__(self, builder: sequence.SequenceBuilder):
        self.builder = builder

    def random_map(self, example, rng: np.random.Generator):
        drawn = self.builder.draw(self.builder.sample_task(rng), rng)
        return self.builder.read_caption(example, rng), drawn


def rows_per_process(config: Config) -> int:
    count = jax.process_count()
    if config.train.batch_size % count:
        raise ConfigError(f"train.batch_size ({config.train.batch_size}) must divide over "
                          f"{count} processes; try train.batch_size="
                          f"{-(-config.train.batch_size // count) * count}")
    return config.train.batch_size // count


def make_loader(workdir: pathlib.Path, config: Config) -> loader.Loader:
    """Endless, shuffled, process-sharded batches of packed rows from the train split, each
    with its cost (`step_cost`) computed where it is built."""
    builder = sequence.SequenceBuilder(config)
    per_row = config.sequence.examples_per_row
    rows_per_process(config)  # the batch must split over processes: say so in train.* terms

    def pack(drawn):
        batch = builder.batch_drawn(
            [drawn[i:i + per_row] for i in range(0, len(drawn), per_row)], config.seq_len)
        tokens, step_flops = _count(config, batch)
        return {**batch, "cost_tokens": np.int64(tokens), "cost_flops": np.float64(step_flops)}

    return loader.make_loader(
        workdir / "latents", "train", batch_size=config.train.batch_size * per_row,
        seed=config.train.seed, transforms=[_Draw(builder)], batch_fn=pack,
        worker_count=config.loader.worker_count, prepare=builder.prepare,
        memory_mb=config.loader.memory_mb)


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
        key = loop.step_key(state)
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
        new = loop.apply_gradients(tx, state, grads)
        # Skipped steps do not advance the optimizer's schedule.
        applied = state["step"] - state["opt"].total_notfinite
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": lr(applied),
                   "skipped": new["opt"].total_notfinite, "sums": sums, "counts": counts}
        return new, metrics

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
        state = loop.initial_state(params, tx, t.seed)
    return graphdef, state, loop.compile_step(make_train_step(config, graphdef, tx), state)


def make_eval_step(config: Config, graphdef) -> Callable:
    def evaluate(params, batch):
        denom = losses.denominators(batch)
        key = jax.random.key(config.train.seed + 1)  # the same noise at every evaluation
        _, aux = losses.loss_fn(config, nnx.merge(graphdef, params), batch, key, denom)
        return aux["sums"], aux["counts"]
    return evaluate


def step_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """A fetched step's metrics as logged: loss, grad_norm, lr, skipped, and the loss of each
    task and modality."""
    return {"loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]),
            "lr": float(metrics["lr"]), "skipped": float(metrics["skipped"]),
            **losses.report(metrics["sums"], metrics["counts"])}


def _count(config: Config, batch: dict[str, np.ndarray]) -> tuple[int, float]:
    return int((batch["segment_ids"] > 0).sum()), flops.train_flops(config, batch)


def step_cost(config: Config, batch: dict[str, np.ndarray]) -> tuple[int, float]:
    """(real tokens, training FLOPs) of this process's rows: as the loader counted them, or
    counted now."""
    if "cost_flops" in batch:
        return int(batch["cost_tokens"]), float(batch["cost_flops"])
    return _count(config, batch)


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------

def make_stage(workdir: pathlib.Path, config: Config, progress: bool = True) -> loop.Stage:
    """The transformer's training as `o1.train.loop` runs it: config checks against the
    workdir, the model and optimizer created in their sharding, the jitted step, the loader
    (batches placed on the devices ahead of their step) and validation.

    Raises:
      ConfigError: the config does not fit the workdir, the devices or the processes.
    """
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
    validation = validation_batches(workdir, config)
    peak, peak_source = flops.peak_flops(config)
    log.info("peak %.3g FLOP/s (%s); %d devices, mesh %s", peak, peak_source,
             jax.device_count(), dict(mesh.shape))
    if progress and jax.process_index() == 0:
        tqdm.write(f"o1 train: {len(jax.devices())} devices, mesh {dict(mesh.shape)}, peak "
                   f"{peak / 1e9:.1f} GFLOP/s ({peak_source})")

    def validate(state) -> dict[str, float]:
        values = {}
        with jax.set_mesh(mesh):
            for batches_of_task in validation.values():
                sums = counts = 0.0
                for batch in batches_of_task:
                    s, c = eval_step(state["params"], sh.global_batch(only_batch(batch), mesh))
                    sums, counts = sums + np.asarray(s), counts + np.asarray(c)
                values.update({k: v for k, v in losses.report(sums, counts).items()
                               if not k.startswith("all/")})
        return values

    return loop.Stage(
        name="train", workdir=workdir, checkpoints=workdir / "checkpoints", steps=t.steps,
        log_every=t.log_every, checkpoint_every=t.checkpoint_every,
        keep_checkpoints=t.keep_checkpoints, state=state, step=train_step,
        loader=make_loader(workdir, config), mesh=mesh,
        place=lambda batch: sh.global_batch(only_batch(batch), mesh),
        scalars=step_scalars, eval_every=t.eval_every, validate=validate,
        cost=lambda batch: step_cost(config, batch), peak_flops=peak, progress=progress)


def train(workdir: str | os.PathLike, config: Config, stop: StopRequest | None = None,
          progress: bool = True) -> dict[str, float]:
    """Trains (or resumes) the transformer in `workdir`; returns the last metrics.

    Raises:
      ConfigError: the config does not fit the workdir, the devices or the processes.
      Preempted: `stop` was requested; a checkpoint of the last finished step was saved.
    """
    return loop.fit(make_stage(pathlib.Path(workdir), config, progress), stop or StopRequest())
