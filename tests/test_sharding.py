"""Sharding: the mesh, every parameter's placement (a golden file), and sharded training that
computes what one device computes.

The golden file `tests/golden/tiny_param_sharding.txt` lists every parameter of the `tiny`
model on a data=2 fsdp=2 tensor=2 mesh. After an intended change of the model or of the rule
table, regenerate it and review the diff:

    O1_UPDATE_GOLDEN=1 uv run --locked pytest tests/test_sharding.py
"""

import os
import pathlib

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from o1 import configs, losses
from o1 import sharding as sh
from o1.config import TASKS, ConfigError, MeshConfig
from o1.model import Model
from o1.sequence import SequenceBuilder, random_example

GOLDEN = pathlib.Path(__file__).parent / "golden" / "tiny_param_sharding.txt"
MESH = MeshConfig(data=2, fsdp=2, tensor=2)


@pytest.fixture(scope="module")
def config():
    return configs.get("tiny")


@pytest.fixture(scope="module")
def mesh():
    if len(jax.devices()) != 8:
        pytest.skip("needs the 8 fake CPU devices of conftest.py")
    return sh.make_mesh(MESH)


@pytest.fixture(scope="module")
def sharded(config, mesh):
    return sh.create_model(lambda: Model(config, nnx.Rngs(0)), mesh)


# ----------------------------------------------------------------------------------------------
# The mesh
# ----------------------------------------------------------------------------------------------


def test_mesh_sizes_resolve_the_rest(mesh):
    assert sh.mesh_shape(MeshConfig(), 8) == (8, 1, 1)
    assert sh.mesh_shape(MeshConfig(data=2, fsdp=-1, tensor=2), 8) == (2, 2, 2)
    assert sh.mesh_shape(MeshConfig(data=1, fsdp=2, tensor=-1), 8) == (1, 2, 4)
    assert mesh.axis_names == sh.MESH_AXES
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}


def test_mesh_sizes_that_do_not_fit_the_devices_say_what_to_change():
    with pytest.raises(ConfigError, match=r"mesh data x fsdp x tensor = 2 x 2 x 1 = 4 devices, "
                                          r"but 8 are available; set one of .* to -1"):
        sh.mesh_shape(MeshConfig(data=2, fsdp=2, tensor=1), 8)
    with pytest.raises(ConfigError, match="do not divide the 8 devices"):
        sh.mesh_shape(MeshConfig(data=-1, fsdp=3, tensor=1), 8)
    with pytest.raises(ConfigError, match=f"16 devices, but {jax.device_count()} are available"):
        sh.make_mesh(MeshConfig(data=4, fsdp=2, tensor=2))
    with pytest.raises(ConfigError, match="at most one -1"):
        MeshConfig(data=-1, fsdp=-1)
    with pytest.raises(ConfigError, match="mesh sizes must be positive"):
        configs.get("tiny", ["mesh.tensor=0"])


# ----------------------------------------------------------------------------------------------
# Every parameter's sharding
# ----------------------------------------------------------------------------------------------


HEADER = ("# Every parameter of o1.model.Model for configs/tiny.py on a data=2 fsdp=2 tensor=2 "
          "mesh:\n# path  dtype[shape]  (logical axes) -> mesh PartitionSpec. Regenerate with\n"
          "# O1_UPDATE_GOLDEN=1 uv run --locked pytest tests/test_sharding.py\n")


def spec_lines(state) -> list[str]:
    """One line per parameter: path, dtype[shape], logical axes -> mesh PartitionSpec."""
    lines = []
    specs = nnx.to_flat_state(sh.param_specs(state))
    for (path, var), (_, spec) in zip(nnx.to_flat_state(state), specs, strict=True):
        axes = ", ".join(str(a) for a in var.get_metadata()["out_sharding"])
        shape = ", ".join(map(str, var.shape))
        lines.append(f"{'.'.join(map(str, path))}  {var.dtype}[{shape}]  ({axes}) -> "
                     f"{tuple(spec.get_value())}")
    return lines


def test_every_parameter_sharding_matches_the_golden_file(sharded, mesh):
    """Set O1_UPDATE_GOLDEN=1 to rewrite the golden file from the current code."""
    state = nnx.state(sharded, nnx.Param)
    text = HEADER + "\n".join(spec_lines(state)) + "\n"
    if os.environ.get("O1_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), (
        "parameter shardings changed; if intended, regenerate with O1_UPDATE_GOLDEN=1 and "
        "review the diff")

    # Every parameter lives in that sharding: float32, on the mesh, split as its spec says.
    sizes = dict(mesh.shape)
    for (path, var), (_, spec) in zip(nnx.to_flat_state(state),
                                      nnx.to_flat_state(sh.param_specs(state)), strict=True):
        array, spec = var[...], spec.get_value()
        assert array.dtype == np.float32, path
        assert array.sharding.mesh == mesh, path
        assert array.sharding.is_equivalent_to(NamedSharding(mesh, spec), array.ndim), (
            path, array.sharding.spec, spec)
        assert tuple(array.sharding.spec) == tuple(spec), path
        split = [int(np.prod([sizes[a] for a in (axis if isinstance(axis, tuple) else (axis,))]))
                 if axis else 1 for axis in spec]
        local = tuple(s // n for s, n in zip(array.shape, split, strict=True))
        assert {shard.data.shape for shard in array.addressable_shards} == {local}, path


def test_sharded_init_has_the_weights_of_a_plain_init(config, sharded):
    with nnx.use_eager_sharding(False):  # one device, no mesh
        plain = Model(config, nnx.Rngs(0))
    ours = nnx.to_flat_state(nnx.state(sharded, nnx.Param))
    theirs = nnx.to_flat_state(nnx.state(plain, nnx.Param))
    for (path, a), (_, b) in zip(ours, theirs, strict=True):
        # Jitted and op-by-op initializers may round std * normal differently (1 ulp).
        np.testing.assert_allclose(np.asarray(a[...]), np.asarray(b[...]), rtol=1e-6, atol=0,
                                   err_msg=str(path))


def test_shard_is_the_identity_without_a_mesh():
    x = np.arange(12.0).reshape(3, 4)
    assert sh.shard(x, sh.BATCH, sh.ACT_EMBED) is x
    assert sh.logical_spec((sh.BATCH, sh.LENGTH, sh.MLP)) == PartitionSpec(
        ("data", "fsdp"), None, "tensor")


# ----------------------------------------------------------------------------------------------
# Sharded and single-device training steps agree
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scan_layers", [False, True])
def test_sharded_and_single_device_losses_and_gradients_agree(config, mesh, sharded,
                                                              scan_layers):
    builder = SequenceBuilder(config)
    rng = np.random.default_rng(0)
    tasks = [*TASKS, "video_to_caption"]  # 8 examples, 2 per row: 4 rows, one per data shard
    built = [builder.build(random_example(config, i), task, rng) for i, task in enumerate(tasks)]
    batch = builder.batch([built[i:i + 2] for i in range(0, 8, 2)], config.seq_len)
    graphdef, params, rest = nnx.split(sharded, nnx.Param, ...)
    if scan_layers:  # the same sharded parameters, their blocks run as one scan
        scanned = configs.get("tiny", ["model.scan_layers=true"])
        with nnx.use_eager_sharding(False):
            abstract = nnx.eval_shape(lambda: Model(scanned, nnx.Rngs(0)))
        graphdef, _, rest = nnx.split(abstract, nnx.Param, ...)

    @jax.jit
    def loss_and_grads(params, batch, key):
        # As train/trainer.py's step: the denominators of the whole batch, then the loss.
        denom = losses.denominators(batch)

        def loss_of(params):
            return losses.loss_fn(config, nnx.merge(graphdef, params, rest), batch, key, denom)

        return jax.value_and_grad(loss_of, has_aux=True)(params)

    key = jax.random.key(0)
    single_params = jax.device_put(jax.device_get(params), jax.devices()[0])
    (loss, aux), grads = loss_and_grads(single_params, batch, key)
    with jax.set_mesh(mesh):
        global_batch = sh.global_batch(batch, mesh)
        assert global_batch["tokens"].addressable_shards[0].data.shape == (1, config.seq_len)
        (loss8, aux8), grads8 = loss_and_grads(params, global_batch, key)

    assert np.isfinite(loss) and loss > 0
    np.testing.assert_allclose(loss8, loss, rtol=1e-6)
    np.testing.assert_array_equal(aux8["counts"], aux["counts"])
    np.testing.assert_allclose(aux8["sums"], aux["sums"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(optax.tree.norm(grads8), optax.tree.norm(grads), rtol=1e-6)
    for (path, g8), (_, g) in zip(nnx.to_flat_state(grads8), nnx.to_flat_state(grads),
                                  strict=True):
        # Sums over sharded dimensions add up in another order: absolute error ~1e-7 of the
        # gradient's scale, so tiny elements may differ by more than rtol alone allows.
        g8, g = np.asarray(g8[...]), np.asarray(g[...])
        np.testing.assert_allclose(g8, g, rtol=1e-5, atol=1e-5 * np.abs(g).max(),
                                   err_msg=str(path))
