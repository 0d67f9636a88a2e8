"""Shared test setup: 8 fake CPU devices (set before JAX is imported) and small datasets."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
