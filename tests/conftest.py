"""Shared test setup: 8 fake CPU devices (set before JAX is imported) and small datasets."""

import os
import pathlib

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests build the same small programs many times (every train() call, every subprocess): a
# per-session persistent compilation cache turns the repeats into cache hits.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="o1-test-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import pytest  # noqa: E402

from o1 import configs  # noqa: E402


@pytest.fixture(scope="session")
def tiny_config():
    return configs.get("tiny")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_config):
    """The tiny AV-Shapes dataset, built once per test session."""
    from o1.train import datasets

    return datasets.build_avshapes(tiny_config, tmp_path_factory.mktemp("data") / "avshapes")


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory, tiny_config, tiny_dataset):
    """A workdir with tiny tokenizers and their latent cache, built once per test session.

    Tests that train copy it (`fresh_workdir`) so their checkpoints never meet.
    """
    from o1.train import latents
    from o1.train import tokenizers as tok_train

    workdir = tmp_path_factory.mktemp("tiny_run")
    tok_train.train_tokenizers(workdir, tiny_dataset, tiny_config)
    latents.encode_dataset(workdir, tiny_dataset)
    return workdir


@pytest.fixture
def fresh_workdir(tmp_path, tiny_workdir):
    """A private copy of `tiny_workdir` (tokenizers and latents, no transformer checkpoints)."""
    import shutil

    return pathlib.Path(shutil.copytree(tiny_workdir, tmp_path / "run"))


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory, tiny_workdir):
    """A copy of `tiny_workdir` with a transformer trained for 2 steps: enough to sample from.
    Tests that use it must not write checkpoints into it."""
    import shutil

    from o1.train import trainer

    workdir = pathlib.Path(shutil.copytree(tiny_workdir, tmp_path_factory.mktemp("trained") / "w"))
    config = configs.get("tiny", ["train.steps=2", "train.eval_every=100",
                                  "train.peak_flops=1e12"])
    trainer.train(workdir, config, progress=False)
    return workdir
