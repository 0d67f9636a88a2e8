"""Logical axes, the one rule table that maps them to mesh axes, and the sharding helpers.

Parameters are annotated with logical axis names where they are created
(`nnx.with_partitioning(init, (EMBED, MLP))`); activations are constrained with `shard(x, ...)`.
`RULES` turns both into mesh axes of a 3-axis mesh:

  data    pure data parallelism: the batch is split, parameters are replicated
  fsdp    the batch is split and so are parameters and optimizer state (ZeRO-3 style)
  tensor  heads, MLP hidden units and the vocabulary are split (Megatron style)

Everything here also works without a mesh (one device): `shard` is then the identity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from o1.config import ConfigError, MeshConfig

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axes.
BATCH = "batch"  # examples (rows) of a batch
LENGTH = "length"  # sequence positions
EMBED = "embed"  # the residual stream, in parameters
ACT_EMBED = "act_embed"  # the residual stream, in activations
HEADS = "heads"  # query heads
KV_HEADS = "kv_heads"  # key/value heads
HEAD_DIM = "head_dim"  # features of one head
MLP = "mlp"  # SwiGLU hidden units
VOCAB = "vocab"  # text vocabulary
MEDIA = "media"  # features of a media token (a video patch or an audio latent)
LAYERS = "layers"  # the decoder blocks, stacked: every block's parameter has this leading axis

RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    (BATCH, ("data", "fsdp")),
    (LENGTH, None),
    (EMBED, "fsdp"),
    (ACT_EMBED, None),
    (HEADS, "tensor"),
    (KV_HEADS, "tensor"),
    (HEAD_DIM, None),
    (MLP, "tensor"),
    (VOCAB, "tensor"),
    (MEDIA, None),
    (LAYERS, None),
)
_RULES = dict(RULES)


def logical_spec(axes: Sequence[str | None]) -> PartitionSpec:
    """The mesh PartitionSpec of an array whose dimensions have these logical names."""
    return PartitionSpec(*(_RULES[a] if a is not None else None for a in axes))


def shard(x: jax.Array, *axes: str | None) -> jax.Array:
    """Constrains activation `x` to the sharding of its logical axes (identity without a mesh)."""
    if jax.sharding.get_abstract_mesh().empty:
        return x
    return jax.lax.with_sharding_constraint(x, logical_spec(axes))


def mesh_shape(cfg: MeshConfig, num_devices: int) -> tuple[int, int, int]:
    """Resolves -1 in (data, fsdp, tensor) and checks the product is the device count."""
    sizes = [cfg.data, cfg.fsdp, cfg.tensor]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ConfigError(
                f"mesh sizes {dict(zip(MESH_AXES, sizes, strict=True))} do not divide the "
                f"{num_devices} devices; make the fixed sizes multiply to a divisor of "
                f"{num_devices}")
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ConfigError(
            f"mesh data x fsdp x tensor = {' x '.join(map(str, sizes))} = {math.prod(sizes)} "
            f"devices, but {num_devices} are available; set one of mesh.data/fsdp/tensor to -1 "
            f"to use the rest")
    return tuple(sizes)  # type: ignore[return-value]


def make_mesh(cfg: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(cfg, len(devices))
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def param_specs(state: Any) -> Any:
    """PartitionSpecs (in mesh axes) of every variable of an nnx State."""
    with nnx.logical_axis_rules(RULES):
        return nnx.get_partition_spec(state)


def named(mesh: Mesh, specs: Any) -> Any:
    return jax.tree.map(lambda p: NamedSharding(mesh, p), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def create_model(make: Callable[[], nnx.Module], mesh: Mesh) -> nnx.Module:
    """Builds `make()` with every parameter created directly in its sharding on `mesh`.

    The model is first traced abstractly (no memory), its parameter shardings derived from
    their logical annotations, and the initializer jitted with those output shardings, so no
    device ever holds a full copy of a sharded parameter.
    """
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(make)
        graphdef, abstract_state = nnx.split(abstract)
        shardings = named(mesh, param_specs(abstract_state))

        def init():
            return nnx.state(make())

        with jax.set_mesh(mesh):
            state = jax.jit(init, out_shardings=shardings)()
    return nnx.merge(graphdef, state)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """How a batch array [B, ...] is laid out: rows split over data and fsdp."""
    return NamedSharding(mesh, logical_spec((BATCH,) + (None,) * (ndim - 1)))


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Global arrays from this process's rows (every process passes its own slice)."""
    shardings = {k: batch_sharding(mesh, v.ndim) for k, v in local.items()}
    if jax.process_count() == 1:  # the whole batch is here: one transfer of every array
        return jax.device_put(local, shardings)
    return {k: jax.make_array_from_process_local_data(shardings[k], v)
            for k, v in local.items()}


def initialize_distributed(cfg: MeshConfig) -> None:
    """Joins this process to a multi-process JAX job, before anything touches the devices.

    Nothing happens for a single process (num_processes 1 and no coordinator). Otherwise the
    coordinator address, process count and process id come from `cfg`, and those left unset
    (empty, -1) from the environment: `JAX_COORDINATOR_ADDRESS`, or a cluster JAX detects
    (SLURM, Open MPI, Cloud TPU, Kubernetes). Safe to call again once joined.

    Raises:
      ConfigError: the job could not be joined: settings missing or out of range, or JAX
        already started on this process's devices alone.
    """
    if cfg.num_processes == 1 and not cfg.coordinator_address:
        return
    if jax.distributed.is_initialized():
        return
    # Cross-process collectives on CPU (fake hosts in tests) go through gloo; GPUs and TPUs
    # ignore this. An explicit choice (e.g. mpi) is kept.
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    settings = (f"mesh.coordinator_address={cfg.coordinator_address!r}, "
                f"mesh.num_processes={cfg.num_processes}, mesh.process_id={cfg.process_id}")
    try:
        jax.distributed.initialize(
            cfg.coordinator_address or None,
            None if cfg.num_processes == -1 else cfg.num_processes,
            None if cfg.process_id == -1 else cfg.process_id)
    except (RuntimeError, ValueError, TypeError) as e:
        # An unreachable coordinator is not among these: JAX aborts the process after its
        # 5-minute connection timeout, with the address in the log.
        raise ConfigError(
            f"could not join the multi-process job ({settings}): {str(e).rstrip('.')}. Set "
            f"mesh.coordinator_address (host:port of process 0), mesh.num_processes and "
            f"mesh.process_id, or leave them to a cluster JAX detects (SLURM, Open MPI, Cloud "
            f"TPU), or use mesh.num_processes=1 for a single process") from e
