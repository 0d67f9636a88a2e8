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

import jax
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


def abstract(tree):
    """`tree`'s arrays as `jax.ShapeDtypeStruct`s with their shardings: a restore target."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        tree)


def state_keys(directory: str | os.PathLike, step: int) -> set[str]:
    """The top-level keys of the `state` saved at `step` in `directory`."""
    path = pathlib.Path(directory).resolve() / str(step) / "state"
    return set(ocp.PyTreeCheckpointHandler().metadata(path).keys())


def restore(directory: str | os.PathLike, target: dict[str, Any], step: int | None = None
            ) -> tuple[dict[str, Any], int]:
    """Reads the parts of a checkpoint's `state` named by `target`'s keys.

    Args:
      directory: a checkpoint directory written by the training loop.
      target: a subtree of the saved state (e.g. `{"params": ...}`) of `jax.ShapeDtypeStruct`s
        (`abstract(arrays)`), which give the restored arrays' shapes, dtypes and shardings.
      step: the step to read; default the latest.

    Returns:
      (the restored subtree, its step).

    Raises:
      FileNotFoundError: `directory` holds no checkpoint (or not `step`).
      KeyError: a leaf of `target` is not in the checkpoint.
    """
    with manager(directory) as m:
        step = m.latest_step() if step is None else step
        if step is None or step not in m.all_steps():
            raise FileNotFoundError(f"no checkpoint{'' if step is None else f' {step}'} in "
                                    f"{directory}")
        restored = m.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True)))
    # A partial restore hands back the target's own leaf where the checkpoint has none.
    missing = [jax.tree_util.keystr(path) for path, x in jax.tree_util.tree_leaves_with_path(
        restored["state"]) if isinstance(x, jax.ShapeDtypeStruct)]
    if missing:
        raise KeyError(f"the checkpoint {step} in {directory} has no {', '.join(missing[:3])}"
                       f"{' ...' if len(missing) > 3 else ''}")
    return dict(restored["state"]), step
