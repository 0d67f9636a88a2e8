"""A resumable training loop for one flax.nnx model: optax, orbax checkpoints, grain state.

Used by every stage that trains a model on batches (the tokenizer VAEs now, the transformer
later). A checkpoint holds the model, the optimizer, and the data iterator's state, and the
step's random key is derived from (seed, step), so a run that is stopped (SIGTERM, Ctrl-C)
or killed resumes from its latest committed checkpoint and takes exactly the steps an
uninterrupted run would have taken.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

import jax
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm import tqdm

from o1.train.metrics import MetricWriter


class Preempted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint; run again to resume."""


class StopRequest:
    """Turns SIGTERM and SIGINT into a flag the loop checks between steps."""

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """What one training run does; filled from a config section by the caller."""

    name: str  # stage name: checkpoint folder, metric prefix, progress bar label
    steps: int  # total optimizer steps
    learning_rate: float  # peak learning rate
    log_every: int  # steps between metric writes
    checkpoint_every: int  # steps between checkpoints
    seed: int  # base of every step's random key
    optimizer: str = "adam"  # adam, or muon (orthogonalized updates for weight matrices)
    adam_learning_rate: float = 3e-3  # with muon: the peak rate of biases, norms, vectors
    warmup_steps: int = 30  # steps of linearly rising learning rate (capped at steps / 10)


def _muon_dimensions(params):
    """Which axes of each weight Muon treats as the matrix: inputs reduced, outputs kept."""
    def dims(x):
        if x.ndim >= 2:  # dense [in, out]; conv [*kernel, in, out]
            return optax.contrib.MuonDimensionNumbers(tuple(range(x.ndim - 1)), (x.ndim - 1,))
        return None  # biases and scales take the Adam path
    return jax.tree.map(dims, params)


def make_optimizer(cfg: LoopConfig) -> optax.GradientTransformation:
    warmup = max(1, min(cfg.warmup_steps, cfg.steps // 10))

    def schedule(peak):
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(cfg.steps, warmup + 1),
                                                  peak * 0.05)

    if cfg.optimizer == "adam":
        return optax.chain(optax.clip_by_global_norm(1.0),
                           optax.adam(schedule(cfg.learning_rate), b2=0.99))
    if cfg.optimizer == "muon":
        return optax.contrib.muon(schedule(cfg.learning_rate),
                                  adam_learning_rate=schedule(cfg.adam_learning_rate),
                                  adam_b2=0.99, muon_weight_dimension_numbers=_muon_dimensions)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use adam or muon")


def _pure(model: nnx.Module, optimizer: nnx.Optimizer) -> dict:
    return {"model": nnx.to_pure_dict(nnx.state(model)),
            "opt": nnx.to_pure_dict(nnx.state(optimizer))}


def _load(obj, values) -> None:
    state = nnx.state(obj)
    nnx.replace_by_pure_dict(state, values)
    nnx.update(obj, state)


def checkpoint_manager(directory: str | os.PathLike) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        pathlib.Path(directory).resolve(),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def restore_model(directory: str | os.PathLike, model: nnx.Module) -> int:
    """Loads the latest checkpoint's parameters into `model`; returns its step."""
    manager = checkpoint_manager(directory)
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    target = {"model": nnx.to_pure_dict(nnx.state(model))}
    # Only the parameters: the optimizer state in the checkpoint is left unread.
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)))
    _load(model, restored["state"]["model"])
    return step


def fit(cfg: LoopConfig, model: nnx.Module,
        loss_fn: Callable[[nnx.Module, Any, jax.Array], tuple[jax.Array, dict]],
        batches: Iterator, prepare: Callable[[dict], Any], directory: str | os.PathLike,
        writer: MetricWriter, stop: StopRequest) -> nnx.Module:
    """Trains `model` in place for `cfg.steps` steps, resuming from `directory` if it can.

    Args:
      loss_fn: (model, batch, key) -> (scalar loss, dict of scalar metrics).
      batches: a grain iterator (with get_state/set_state) over raw batches.
      prepare: raw batch -> model input (runs outside jit).
      directory: where this stage's orbax checkpoints live.

    Raises:
      Preempted: `stop` was requested; a checkpoint of the last finished step was saved.
    """
    optimizer = nnx.Optimizer(model, make_optimizer(cfg), wrt=nnx.Param)
    manager = checkpoint_manager(directory)
    start = manager.latest_step() or 0
    if start:
        restored = manager.restore(start, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_pure(model, optimizer)),
            loader=ocp.args.JsonRestore()))
        _load(model, restored["state"]["model"])
        _load(optimizer, restored["state"]["opt"])
        batches.set_state(restored["loader"]["state"].encode())
    if start >= cfg.steps:
        return model

    @nnx.jit
    def train_step(model, optimizer, batch, key):
        grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
        (loss, metrics), grads = grad_fn(model, batch, key)
        optimizer.update(model, grads)
        return {"loss": loss, **metrics}

    def save(step: int) -> None:
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_pure(model, optimizer)),
            loader=ocp.args.JsonSave({"state": batches.get_state().decode()})))
        manager.wait_until_finished()

    base_key = jax.random.key(cfg.seed)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=cfg.name,
               unit="step", dynamic_ncols=True)
    for step in bar:
        metrics = train_step(model, optimizer, prepare(next(batches)),
                             jax.random.fold_in(base_key, step))
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            writer.write(done, values)
            bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or stop.requested:
            save(done)
        if stop.requested and done < cfg.steps:
            bar.close()
            raise Preempted(f"{cfg.name} stopped at step {done}/{cfg.steps}; checkpoint "
                            f"saved in {directory}, run the same command again to resume")
    return model
