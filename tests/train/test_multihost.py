"""Multi-host: two local processes of 4 fake CPU devices each act as one job of 8 devices.

Each process runs `multihost_worker.py` (its own JAX, joined through `jax.distributed` with a
localhost coordinator); the same worker alone on 8 fake devices is the reference.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from o1 import sharding
from o1.config import ConfigError, MeshConfig

WORKER = pathlib.Path(__file__).with_name("multihost_worker.py")
TIMEOUT_S = 300
# The compiled programs run for milliseconds; LLVM's optimizations would take most of the
# test's time. Every process, the reference included, compiles the same way.
FAST_COMPILE = "--xla_backend_optimization_level=0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(out: pathlib.Path, num_processes: int, devices_each: int, *args: str) -> list:
    """Launches a job of `num_processes` worker processes; returns [(process, result, log)]."""
    out.mkdir(parents=True)
    # A proxy in the environment can capture the processes' gRPC connections to localhost.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each} {FAST_COMPILE}")
    job = [str(WORKER), *args]
    if num_processes > 1:
        job += ["--coordinator", f"localhost:{_free_port()}",
                "--num-processes", str(num_processes)]
    procs = []
    for i in range(num_processes):
        result, log = out / f"process_{i}.json", out / f"process_{i}.log"
        ident = ["--process-id", str(i)] if num_processes > 1 else []
        with open(log, "w") as f:
            proc = subprocess.Popen([sys.executable, *job, "--out", str(result), *ident],
                                    env=env, stdout=f, stderr=subprocess.STDOUT)
        procs.append((proc, result, log))
    return procs


def _report(procs: list) -> str:
    """Every process's state and the end of its output: the first to fail is not always the
    first to exit (a failed process waits at exit for the others to shut down)."""
    out = []
    for proc, _, log in procs:
        state = "running" if proc.poll() is None else f"exit status {proc.returncode}"
        # XLA's warnings about resharding are long and many; they are not why a process failed.
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if "spmd_partitioner" not in line]
        out += [f"--- {log.parent.name}/{log.stem} ({state}):", *lines[-25:]]
    return "\n".join(out)


def _wait(*jobs: list) -> list[list[dict]]:
    """Every job's per-process results; fails (stopping the rest) when a process fails or the
    jobs outlast TIMEOUT_S, with every process's output."""
    procs = [p for job in jobs for p in job]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(proc.poll() is None for proc, _, _ in procs):
            if any(proc.poll() for proc, _, _ in procs):
                pytest.fail(f"a process failed:\n{_report(procs)}")
            if time.monotonic() > deadline:
                pytest.fail(f"processes still running after {TIMEOUT_S} s:\n{_report(procs)}")
            time.sleep(0.2)
        if any(proc.returncode for proc, _, _ in procs):
            pytest.fail(f"a process failed:\n{_report(procs)}")
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [[json.loads(result.read_text()) for _, result, _ in job] for job in jobs]


def test_initialize_distributed_names_the_settings_it_could_not_use():
    sharding.initialize_distributed(MeshConfig())  # one process: nothing to join
    with pytest.raises(ConfigError, match=r"mesh.num_processes=2, mesh.process_id=2"):
        sharding.initialize_distributed(
            MeshConfig(coordinator_address="localhost:1", num_processes=2, process_id=2))


def test_two_processes_take_the_same_step_as_one_with_all_devices(tmp_path):
    two = _start(tmp_path / "two_processes", 2, 4, "step")
    one = _start(tmp_path / "one_process", 1, 8, "step")
    (p0, p1), (single,) = _wait(two, one)

    for i, p in enumerate((p0, p1)):
        assert (p["process_index"], p["process_count"], p["local_devices"], p["devices"]) == (
            i, 2, 4, 8)
    assert (single["process_count"], single["devices"]) == (1, 8)
    for p in (p0, p1, single):
        assert p["skipped"] == 0 and np.isfinite(p["loss"])
    # Every process reads the same replicated metrics, and the 2-process step (each feeding its
    # half of the batch) is the 1-process step: loss, gradients and updated parameters.
    for key in ("loss", "grad_norm", "param_norm"):
        assert p0[key] == p1[key], key
        np.testing.assert_allclose(p0[key], single[key], rtol=1e-5, err_msg=key)


@pytest.mark.slow
def test_two_process_training_checkpoints_each_data_shard_and_resumes_exactly(
        tmp_path, fresh_workdir):
    workdir = fresh_workdir
    train = ("train", "--workdir", str(workdir), "--steps", "4")  # checkpoints at 2 and 4
    (full,) = _wait(_start(tmp_path / "uninterrupted", 2, 4, *train))
    checkpoints = workdir / "checkpoints"
    for step in (2, 4):
        states = sorted(p.name for p in (checkpoints / str(step) / "loader").glob("*.json"))
        assert states == ["process_0-of-2.json", "process_1-of-2.json"]
    loader_4 = {p.name: json.loads(p.read_text())
                for p in (checkpoints / "4" / "loader").glob("*.json")}
    # Each process reads its own shard of the train split, as much as the other.
    assert {name: (s["shard_index"], s["shard_count"]) for name, s in loader_4.items()} == {
        "process_0-of-2.json": (0, 2), "process_1-of-2.json": (1, 2)}
    assert len({s["examples_read"] for s in loader_4.values()}) == 1

    # As if killed after step 2: the job resumes from that checkpoint, both processes from
    # their own data-iterator state, and retakes steps 3 and 4 exactly.
    shutil.rmtree(checkpoints / "4")
    (resumed,) = _wait(_start(tmp_path / "resumed", 2, 4, *train))
    for a, b in zip(full, resumed, strict=True):
        for key in ("loss", "grad_norm", "all/text", "all/video", "all/audio"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-6, err_msg=key)
    for name, state in loader_4.items():
        assert json.loads((checkpoints / "4" / "loader" / name).read_text()) == state
