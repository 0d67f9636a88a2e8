"""Orbax checkpoints of every model o1 trains, and restoring parameters without training code.

A checkpoint directory holds numbered steps; each step is a composite of `state` (a pytree:
the training loop saves `{params, opt, step, key}`) and `loader` (the data iterator's state).
Serving and the tokenizers read only what they need from `state` (`restore`), so they never
rebuild an optimizer to load weights.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

# The model's stacked decoder blocks (`o1.model.stacked_blocks`): checkpoints of earlier
# versions hold them as one subtree per layer ("blocks/0/...", "blocks/1/..."), which reading
# stacks.
_STACKED = "blocks"


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

    A checkpoint that holds the decoder blocks one subtree per layer (o1 before the blocks
    were stacked) is read in that layout and its layers stacked into `target`'s.

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
        return dict(_read(m, step, target)), step


def _names(path) -> tuple[str, ...]:
    """A pytree key path as strings, as orbax names a saved tree's nodes."""
    return tuple(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _read(m: ocp.CheckpointManager, step: int, target: Any) -> Any:
    """`restore`'s reading of step `step` through the manager `m`."""
    directory = pathlib.Path(m.directory)
    layout = ocp.PyTreeCheckpointHandler().metadata(directory / str(step) / "state").tree
    saved = {_names(path): x for path, x in jax.tree_util.tree_flatten_with_path(layout)[0]}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
    sources = [_saved_as(_names(path), x, saved) for path, x in leaves]
    missing = [jax.tree_util.keystr(path) for (path, _), src in zip(leaves, sources, strict=True)
               if src is None]
    if missing:
        raise KeyError(f"the checkpoint {step} in {directory} has no {', '.join(missing[:3])}"
                       f"{' ...' if len(missing) > 3 else ''}")
    if all(len(src) == 1 for src in sources):
        restored = m.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True)))
        return restored["state"]
    log.info("checkpoint %d in %s holds its decoder blocks one per layer: stacking them",
             step, directory)
    # Read the whole state as saved, on one device, then stack the layers into the
    # target's shardings.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    read = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                        layout)
    restored = m.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        read, restore_args=ocp.checkpoint_utils.construct_restore_args(read))))["state"]
    by_name = {_names(path): x
               for path, x in jax.tree_util.tree_flatten_with_path(restored)[0]}
    arrays = []
    for (_, x), src in zip(leaves, sources, strict=True):
        parts = [by_name[name] for name in src]
        array = parts[0] if len(parts) == 1 else jnp.stack(parts)
        arrays.append(jax.device_put(array, x.sharding))
    return jax.tree_util.tree_unflatten(treedef, arrays)


def _saved_as(name: tuple[str, ...], x, saved: dict) -> list[tuple[str, ...]] | None:
    """The saved arrays that make leaf `name` of a target: itself, or the per-layer arrays
    of a stacked block parameter ([layers, ...]); None when the checkpoint has neither."""
    if name in saved:
        return [name]
    if _STACKED in name and getattr(x, "ndim", 0) >= 1:
        at = name.index(_STACKED) + 1
        layers = [name[:at] + (str(i),) + name[at:] for i in range(x.shape[0])]
        if all(layer in saved for layer in layers):
            return layers
    return None

