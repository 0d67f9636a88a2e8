"""The training loop of every model o1 trains: the tokenizer VAEs and the transformer.

A trainer describes its model as a `Stage` (the initial state, the jitted step, the batches,
optionally validation and the cost of a batch); `fit` does the rest the same way for every
model: resume, the steps, metrics (TensorBoard, `metrics.jsonl`, a progress bar), periodic
validation, checkpoints, and stopping on SIGTERM or Ctrl-C.

The state is a pytree `{params, opt, step, key}` that the step donates. A checkpoint holds it
and every process's data-iterator state, and the step's random key is derived from (key, step)
inside the step, so a run that is stopped (SIGTERM, Ctrl-C) or killed resumes from its latest
committed checkpoint and takes exactly the steps an uninterrupted run would have taken. The
batches do not depend on the loader's worker processes, so a run may resume with another
`loader.worker_count`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import signal
import time
from collections.abc import Callable
from typing import Any

import grain
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm import tqdm

from o1 import checkpoint
from o1.config import ConfigError
from o1.train.loader import Loader
from o1.train.metrics import MetricWriter

log = logging.getLogger(__name__)


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


# ---------------------------------------------------------------------------------------------
# The state and the step.
# ---------------------------------------------------------------------------------------------

def initial_state(params, tx: optax.GradientTransformation, seed: int) -> dict[str, Any]:
    """{params, opt, step, key}: optimizer state in the parameters' shardings, step 0, and the
    key data every step's key is derived from."""
    return {"params": params, "opt": jax.jit(tx.init)(params),
            "step": jnp.zeros((), jnp.int32),
            "key": jax.random.key_data(jax.random.key(seed))}


def step_key(state: dict[str, Any]) -> jax.Array:
    """The random key of the step `state` is about to take."""
    return jax.random.fold_in(jax.random.wrap_key_data(state["key"]), state["step"])


def apply_gradients(tx: optax.GradientTransformation, state: dict[str, Any], grads
                    ) -> dict[str, Any]:
    """The state after one optimizer step with `grads`."""
    updates, opt = tx.update(grads, state["opt"], state["params"])
    return {"params": optax.apply_updates(state["params"], updates), "opt": opt,
            "step": state["step"] + 1, "key": state["key"]}


def loss_step(graphdef, tx: optax.GradientTransformation,
              loss_fn: Callable[[nnx.Module, Any, jax.Array], tuple[jax.Array, dict]]
              ) -> Callable:
    """(state, batch) -> (state, {loss, **metrics}): one gradient step of
    `loss_fn(model, batch, key) -> (scalar loss, dict of scalar metrics)`."""
    def step(state, batch):
        key = step_key(state)

        def loss_of(params):
            return loss_fn(nnx.merge(graphdef, params), batch, key)

        (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state["params"])
        return apply_gradients(tx, state, grads), {"loss": loss, **metrics}
    return step


def compile_step(step: Callable, state: dict[str, Any]) -> Callable:
    """`step` jitted with `state` donated and kept in its shardings."""
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return jax.jit(step, donate_argnums=0, in_shardings=(shardings, None),
                   out_shardings=(shardings, None))


# ---------------------------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------------------------

def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


@dataclasses.dataclass
class Stage:
    """One model's training, as the loop needs it; the model's trainer builds it."""

    name: str  # metric stage, progress-bar label, the word in messages
    workdir: pathlib.Path  # metrics.jsonl and tb/ are written here
    checkpoints: pathlib.Path  # this stage's checkpoint directory
    steps: int  # total optimizer steps
    log_every: int  # steps between metric writes (and at the end)
    checkpoint_every: int  # steps between checkpoints (and at the end, and on a stop)
    state: dict[str, Any]  # the initial {params, opt, step, key}; a resume replaces it
    step: Callable[[dict, Any], tuple[dict, dict]]  # (state, input) -> (state, metrics), jitted
    loader: Loader  # endless batches of this process's examples
    prepare: Callable[[Any], Any] = lambda batch: batch  # batch -> step input, on the host
    # step input -> its arrays on the devices (default: left to the step's jit)
    place: Callable[[Any], Any] = lambda batch: batch
    scalars: Callable[[Any], dict[str, float]] = _scalars  # fetched metrics -> logged numbers
    keep_checkpoints: int = 2  # committed checkpoints kept
    eval_every: int = 0  # steps between validations (and at the end); 0 = none
    validate: Callable[[dict], dict[str, float]] | None = None  # state -> numbers of `val`
    # this process's batch -> (tokens, FLOPs of the step), for tokens_per_s and mfu
    cost: Callable[[Any], tuple[int, float]] | None = None
    peak_flops: float = 0.0  # FLOP/s of all devices together, for mfu
    progress: bool = True  # a progress bar and validation lines on stderr
    mesh: Any = None  # the loop runs under jax.set_mesh(mesh) when given


@dataclasses.dataclass
class _Window:
    """Throughput since the last log line: counters at its first step and when it began."""

    start: float
    done: int  # steps finished when the window began
    tokens: int = 0  # totals of the run at that point
    flops: float = 0.0

    def rates(self, now: float, done: int, tokens: int, flops: float, peak: float
              ) -> dict[str, float]:
        seconds, steps = now - self.start, done - self.done
        out = {"step_time": seconds / steps, "steps_per_s": steps / seconds}
        if flops > self.flops:
            out.update(tokens_per_s=(tokens - self.tokens) / seconds)
            if peak:
                out.update(mfu=(flops - self.flops) / seconds / peak)
        return out


def fit(stage: Stage, stop: StopRequest) -> dict[str, float]:
    """Trains (or resumes) `stage` up to `stage.steps`; returns the last logged metrics.

    Raises:
      Preempted: `stop` was requested; a checkpoint of the last finished step was saved.
    """
    with jax.set_mesh(stage.mesh) if stage.mesh is not None else contextlib.nullcontext():
        return _fit(stage, stop)


def _on_leaves(step: Callable, state: dict[str, Any]) -> Callable:
    """`step` as a jitted function of the state's leaves (a list of arrays), donated and
    kept in their shardings. Calling a jitted function flattens its arguments on every call,
    and the leaves of a list flatten in C++ where an nnx state's Variables go through
    Python: on a fast device that difference is a large share of the step."""
    treedef = jax.tree.structure(state)
    shardings = [x.sharding for x in jax.tree.leaves(state)]

    def on_leaves(leaves, batch):
        new, metrics = step(jax.tree.unflatten(treedef, leaves), batch)
        return jax.tree.leaves(new), metrics

    return jax.jit(on_leaves, donate_argnums=0, in_shardings=(shardings, None),
                   out_shardings=(shardings, None))


def _fit(stage: Stage, stop: StopRequest) -> dict[str, float]:
    s = stage
    lead = jax.process_index() == 0
    manager = checkpoint.manager(s.checkpoints, s.keep_checkpoints, asynchronous=True)
    start = manager.latest_step() or 0
    if start >= s.steps:
        manager.close()
        return {}
    state = s.state

    def placed(batch):  # in the loader's thread, ahead of the step that takes it
        cost = s.cost(batch) if s.cost else (0, 0.0)
        return cost, s.place(s.prepare(batch))

    batches = s.loader.iterate(placed, ahead=2)
    if start:
        saved = checkpoint.state_keys(s.checkpoints, start)
        if saved != set(state):
            manager.close()
            raise ConfigError(
                f"{s.checkpoints} holds an unfinished {s.name} run saved by an earlier version "
                f"of o1 (its state has {sorted(saved)}, not {sorted(state)}), which cannot "
                f"resume; move that folder away to train {s.name} from the start")
        state, _ = checkpoint.restore(s.checkpoints, checkpoint.abstract(state), start)
        manager.restore(start, args=ocp.args.Composite(
            loader=grain.checkpoint.CheckpointRestore(batches)))
        log.info("%s: resumed from step %d of %s", s.name, start, s.checkpoints)
        if s.progress and lead:
            tqdm.write(f"{s.name}: resuming at step {start}")

    treedef = jax.tree.structure(state)
    step_fn = _on_leaves(s.step, state)
    leaves = jax.tree.leaves(state)
    del state  # the leaves are donated to each step; a state is rebuilt where one is needed

    def save(step: int) -> None:
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(jax.tree.unflatten(treedef, leaves)),
            loader=grain.checkpoint.CheckpointSave(batches)))

    writer = MetricWriter(s.workdir, s.name, start) if lead else None
    val_writer = MetricWriter(s.workdir, "val", start) if lead and s.validate else None
    last: dict[str, float] = {}
    # smoothing=0: the rate (and ETA) averaged since the start; steps are dispatched ahead and
    # complete in bursts at each metrics fetch, which tqdm's moving average misreads.
    bar = tqdm(range(start, s.steps), initial=start, total=s.steps, desc=s.name, unit="step",
               dynamic_ncols=True, smoothing=0.0, disable=not s.progress or not lead)
    window = None
    tokens = flops = 0  # totals since the first step
    pending = None  # (step, its metrics on the devices, tokens, flops) of the last log step

    def log_step(step_done: int, metrics, tokens_then: int, flops_then: float) -> None:
        """Fetches a log step's metrics (by now computed or nearly) and writes them."""
        nonlocal last, window
        last = s.scalars(jax.device_get(metrics))
        now = time.perf_counter()
        if step_done > window.done:
            last.update(window.rates(now, step_done, tokens_then, flops_then, s.peak_flops))
        window = _Window(now, step_done, tokens_then, flops_then)
        if writer:
            writer.write(step_done, last)
        bar.set_postfix({k: f"{last[k]:.4g}" for k in ("loss", "steps_per_s", "mfu")
                         if k in last}, refresh=False)

    try:
        for step in bar:
            (step_tokens, step_flops), batch = next(batches)
            leaves, metrics = step_fn(leaves, batch)
            done = step + 1
            if window is None:  # the first step compiles: time from its end
                jax.block_until_ready(metrics)
                window = _Window(time.perf_counter(), done)
            else:
                tokens += step_tokens * jax.process_count()
                flops += step_flops * jax.process_count()
            if pending is not None:  # the step after a log step is queued: fetch the log's
                log_step(*pending)
                pending = None
            if done % s.log_every == 0 or done == s.steps:
                for x in jax.tree.leaves(metrics):
                    x.copy_to_host_async()
                pending = (done, metrics, tokens, flops)
            finishing = (done == s.steps or stop.requested
                         or (s.validate and done % s.eval_every == 0)
                         or done % s.checkpoint_every == 0)
            if pending is not None and finishing:
                log_step(*pending)
                pending = None
            if s.validate and (done % s.eval_every == 0 or done == s.steps):
                values = s.validate(jax.tree.unflatten(treedef, leaves))
                if val_writer:
                    val_writer.write(done, values)
                if s.progress and lead:
                    tqdm.write(f"step {done}: validation " + ", ".join(
                        f"{k} {v:.4f}" for k, v in sorted(values.items())))
            if done % s.checkpoint_every == 0 or done == s.steps or stop.requested:
                save(done)
            if stop.requested and done < s.steps:
                manager.wait_until_finished()
                raise Preempted(f"{s.name} stopped at step {done}/{s.steps}; checkpoint saved "
                                f"in {s.checkpoints}, run the same command again to resume")
    finally:
        bar.close()
        batches.close()  # the loader's worker processes
        manager.wait_until_finished()
        manager.close()
        for w in (writer, val_writer):
            if w:
                w.close()
    return last
