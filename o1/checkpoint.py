"""Orbax checkpoints of every model o1 trains, and restoring parameters without training code.

A checkpoint directory holds numbered steps; each step is a composite of `state` (a pytree:
the training loop saves `{params, opt, step, key}`) and `loader` (the data iterator's state).
Serving and the tokenizers read only what they need from `state` (`restore`), so they never
rebuild an optimizer to load weights.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import orbax.checkpoint as ocp


def manager(directory: str | os.PathLike, keep: int = 2, asynchronous: bool = False
            ) -> ocp.CheckpointManager:
    """The checkpoint manager of `directory` (created if missing), keeping the last `keep`."""
    return ocp.CheckpointManager(
        pathlib.Path(directory).resolve(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous,
            cleanup_tmp_directories=True))


def committed_steps(directory: str | os.PathLike) -> list[int]:
    """The committed steps in `directory`, oldest first (a save still in flight is not one)."""
    directory = pathlib.Path(directory)
    return sorted(int(p.name) for p in directory.glob("[0-9]*") if p.name.isdigit() and (
        (p / "commit_success.txt").exists() or (p / "_CHECKPOINT_METADATA").exists()))


def restore(directory: str | os.PathLike, target: dict[str, Any], step: int | None = None
            ) -> tuple[dict[str, Any], int]:
    """Reads the parts of a checkpoint's `state` named by `target`'s keys.

    Args:
      directory: a checkpoint directory written by the training loop.
      target: a subtree of the saved state (e.g. `{"params": ...}`) of arrays or
        `jax.ShapeDtypeStruct`s, which give the restored arrays' shapes, dtypes and shardings.
      step: the step to read; default the latest.

    Returns:
      (the restored subtree, its step).

    Raises:
      FileNotFoundError: `directory` holds no checkpoint (or not `step`).
    """
    with manager(directory) as m:
        step = m.latest_step() if step is None else step
        if step is None or step not in m.all_steps():
            raise FileNotFoundError(f"no checkpoint{'' if step is None else f' {step}'} in "
                                    f"{directory}")
        restored = m.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True)))
    return dict(restored["state"]), step
