"""`o1 train` end to end on the tiny latent cache: memorization, skipped non-finite updates,
exact resume after SIGTERM, SIGKILL during a checkpoint save, metrics and config checks."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from o1 import checkpoint, configs, losses, sequence
from o1 import sharding as sh
from o1.batch import only_batch
from o1.config import ConfigError
from o1.model import Model
from o1.train import datasets, trainer
from o1.train.loop import Preempted, StopRequest

# No start-up matmul benchmark in tests: MFU is computed against this nominal peak.
FAST = ["train.peak_flops=1e12"]


def _train_losses(workdir: pathlib.Path) -> dict[int, float]:
    lines = [json.loads(s) for s in (workdir / "metrics.jsonl").read_text().splitlines()]
    out: dict[int, float] = {}
    for line in lines:
        if line["stage"] == "train":
            assert line["step"] not in out, f"step {line['step']} logged twice"
            out[line["step"]] = line["loss"]
    return out


def _fixed_batch(config, workdir, tasks):
    """One example per row, the tasks given, from the train split."""
    source = datasets.data_source(workdir / "latents", "train")
    builder = sequence.SequenceBuilder(config)
    rng = np.random.default_rng(0)
    rows = [[builder.build(source[i], task, rng)] for i, task in enumerate(tasks)]
    return only_batch(builder.batch(rows, config.seq_len))


def test_tiny_memorizes_a_handful_of_examples(tiny_workdir):
    config = configs.get("tiny", ["sequence.examples_per_row=1", "train.batch_size=4",
                                  "train.steps=400", "train.learning_rate=5e-3",
                                  "train.warmup_steps=10"])
    mesh = sh.make_mesh(config.mesh, jax.devices()[:1])
    graphdef, state, step = trainer.init_state(config, mesh)
    evaluate = jax.jit(trainer.make_eval_step(config, graphdef))
    tasks = ["text_to_av", "video_to_caption", "video_to_audio", "audio_to_video"]
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        batch = sh.global_batch(_fixed_batch(config, tiny_workdir, tasks), mesh)

        def loss(params):  # fixed noise, so before and after see the same inputs
            sums, counts = evaluate(params, batch)
            per_mod = np.asarray(sums).sum(0) / np.maximum(np.asarray(counts).sum(0), 1)
            return float(per_mod.sum())

        before = loss(state["params"])
        for _ in range(config.train.steps):
            state, metrics = step(state, batch)
        after = loss(state["params"])
    print(f"memorization: loss {before:.3f} -> {after:.3f} ({before / after:.1f}x) in "
          f"{time.perf_counter() - start:.1f} s")
    assert before / after > 10
    assert float(metrics["skipped"]) == 0


def test_muon_takes_the_block_matrices_and_trains(tiny_workdir):
    config = configs.get("tiny", ["sequence.examples_per_row=1", "train.batch_size=4",
                                  "train.optimizer=muon", "train.steps=30",
                                  "train.learning_rate=5e-3", "train.warmup_steps=0"])
    mesh = sh.make_mesh(config.mesh, jax.devices()[:1])
    graphdef, state, step = trainer.init_state(config, mesh)
    # Muon sees each block weight as a matrix from the model width (or, for the attention
    # output, from heads x head_dim) to the rest, one per layer (the stack's leading axis is
    # a batch axis); embeddings, heads, norms and scales take AdamW.
    dims = {jax.tree_util.keystr(path): d for path, d in jax.tree_util.tree_leaves_with_path(
        trainer._muon_dimensions(state["params"]), is_leaf=lambda x: x is None or isinstance(
            x, optax.contrib.MuonDimensionNumbers))}
    params = {jax.tree_util.keystr(p): x for p, x in
              jax.tree_util.tree_leaves_with_path(state["params"])}
    assert dims.keys() == params.keys()
    for name, d in dims.items():
        in_blocks = name.startswith("['blocks']") and params[name].ndim >= 3
        assert (d is not None) == in_blocks, name
        if d is not None:
            assert params[name].shape[0] == config.model.num_layers, name
            assert 0 not in (*d.reduction_axis, *d.output_axis), name
            fan_in = np.prod([params[name].shape[i] for i in d.reduction_axis])
            assert fan_in == (config.model.num_heads * config.model.head_dim
                              if "['o']" in name else
                              config.model.mlp_dim if "['down']" in name else
                              config.model.d_model), name
    evaluate = jax.jit(trainer.make_eval_step(config, graphdef))
    with jax.set_mesh(mesh):
        batch = sh.global_batch(_fixed_batch(config, tiny_workdir, ["text_to_av"] * 4), mesh)

        def loss(params):
            sums, counts = evaluate(params, batch)
            return float(np.asarray(sums).sum() / max(np.asarray(counts).sum(), 1))

        before = loss(state["params"])
        for _ in range(config.train.steps):
            state, metrics = step(state, batch)
        after = loss(state["params"])
    print(f"muon: loss {before:.3f} -> {after:.3f}")
    assert after < 0.8 * before and int(metrics["skipped"]) == 0


def test_adaln_offsets_are_biases_to_the_optimizer():
    """adaLN's per-block offsets [layers, 6, D] are neither decayed nor orthogonalized; its
    shared projections are weight matrices outside the blocks (decayed, AdamW), and the
    blocks' norms [layers, D] are not decayed either."""
    config = configs.get("tiny", ["model.noise_conditioning=adaln"])
    with nnx.use_eager_sharding(False):
        params = nnx.state(nnx.eval_shape(lambda: Model(config, nnx.Rngs(0))), nnx.Param)
    flat = lambda tree: {jax.tree_util.keystr(p): x for p, x in  # noqa: E731
                         jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: x is None)}
    decayed, muon = flat(trainer._matrices(params)), flat(trainer._muon_dimensions(params))
    name = "['blocks']['adaln_offset'].value"
    assert decayed[name] is False and muon[name] is None
    for name in ("['adaln']", "['adaln_final']"):
        assert decayed[name + ".value"] is True and muon[name + ".value"] is None
    assert decayed["['blocks']['mlp']['up'].value"] is True
    assert decayed["['blocks']['mlp_norm']['scale'].value"] is False


def test_non_finite_gradient_skips_the_update(tiny_workdir):
    config = configs.get("tiny", ["sequence.examples_per_row=1", "train.batch_size=4"])
    mesh = sh.make_mesh(config.mesh, jax.devices()[:4])
    _, state, step = trainer.init_state(config, mesh)
    good = _fixed_batch(config, tiny_workdir, ["text_to_av"] * 4)
    bad = {**good, "media": good["media"].copy()}
    bad["media"][1, 5] = np.nan  # one corrupt latent in one row
    with jax.set_mesh(mesh):
        before = jax.device_get(state["params"])
        state, metrics = step(state, sh.global_batch(bad, mesh))
        assert not np.isfinite(float(metrics["loss"]))
        assert int(metrics["skipped"]) == 1
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state["params"])),
                        strict=True):
            np.testing.assert_array_equal(a, b)
        # The skipped step did not advance the schedule: the next step still has lr 0 (the
        # warm-up's first value), the one after it moves the parameters.
        state, metrics = step(state, sh.global_batch(good, mesh))
        assert np.isfinite(float(metrics["loss"])) and float(metrics["lr"]) == 0
        state, metrics = step(state, sh.global_batch(good, mesh))
        assert float(metrics["lr"]) > 0 and int(metrics["skipped"]) == 1
        changed = any(not np.array_equal(a, b) for a, b in zip(
            jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state["params"])),
            strict=True))
        assert changed, "a finite step after a skipped one must update the parameters"


def _stop_after(workdir: pathlib.Path, lines: int) -> threading.Thread:
    """Sends this process SIGTERM once `lines` train steps are in metrics.jsonl."""
    def watch():
        while True:
            path = workdir / "metrics.jsonl"
            if path.exists() and path.read_text().count('"stage": "train"') >= lines:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_resume_after_sigterm_repeats_the_straight_run_loss_by_loss(tiny_workdir, tmp_path):
    import shutil

    config = configs.get("tiny", ["train.steps=14", "train.log_every=1",
                                  "train.checkpoint_every=100", "train.eval_every=100", *FAST])
    straight, resumed = (pathlib.Path(shutil.copytree(tiny_workdir, tmp_path / name))
                         for name in ("straight", "resumed"))
    trainer.train(straight, config, progress=False)
    watcher = _stop_after(resumed, 5)
    with StopRequest() as stop, pytest.raises(Preempted):
        trainer.train(resumed, config, stop, progress=False)
    watcher.join()
    stopped_at = max(_train_losses(resumed))
    assert 5 <= stopped_at < config.train.steps
    trainer.train(resumed, config, progress=False)
    a, b = _train_losses(straight), _train_losses(resumed)
    assert sorted(a) == sorted(b) == list(range(1, config.train.steps + 1))
    assert a == b  # exactly, step by step
    # Validation ran at the end of both runs on the same parameters.
    val = [json.loads(s) for s in (straight / "metrics.jsonl").read_text().splitlines()
           if '"stage": "val"' in s]
    assert val and "video_to_caption/text" in val[-1] and "text_to_av/video" in val[-1]


def test_worker_processes_train_and_resume_with_any_worker_count(tiny_workdir, tmp_path):
    """`loader.worker_count=2` trains, resumes with 2 workers and then with none, and takes
    the steps (so the batches) of an uninterrupted run without workers, loss by loss."""
    overrides = ["train.steps=3", "train.log_every=1", "train.checkpoint_every=100",
                 "train.eval_every=100", *FAST]
    straight, resumed = (pathlib.Path(shutil.copytree(tiny_workdir, tmp_path / name))
                         for name in ("straight", "resumed"))
    trainer.train(straight, configs.get("tiny", overrides), progress=False)
    for workers in (2, 2):  # a fresh run with workers, then a resume with workers
        stop = StopRequest()
        stop.requested = True  # as after SIGTERM: one step, a checkpoint, then Preempted
        with pytest.raises(Preempted):
            trainer.train(resumed, configs.get("tiny", [*overrides,
                                                        f"loader.worker_count={workers}"]),
                          stop, progress=False)
    trainer.train(resumed, configs.get("tiny", [*overrides, "loader.worker_count=0"]),
                  progress=False)
    a, b = _train_losses(straight), _train_losses(resumed)
    assert sorted(a) == [1, 2, 3] and a == b


def test_sigkill_during_a_checkpoint_save_never_leaves_a_broken_checkpoint(fresh_workdir):
    args = [sys.executable, "-m", "o1.cli", "train", "--workdir", str(fresh_workdir),
            "--config", "tiny", "train.steps=400", "train.checkpoint_every=1",
            "train.log_every=1", "train.eval_every=1000", *FAST]
    checkpoints = fresh_workdir / "checkpoints"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    killed_during_save = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            steps = [p.name for p in checkpoints.iterdir()] if checkpoints.exists() else []
            committed = [s for s in steps if s.isdigit()]
            if committed and any("tmp" in s for s in steps):
                proc.send_signal(signal.SIGKILL)
                killed_during_save = True
                break
            time.sleep(0.002)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert killed_during_save, f"never saw a save in progress; stderr:\n{err.decode()[-3000:]}"
    leftovers = [p.name for p in checkpoints.iterdir()]
    assert any("tmp" in name for name in leftovers), leftovers
    committed = checkpoint.committed_steps(checkpoints)
    assert committed and committed[-1] >= 1
    last_committed = committed[-1]

    config = configs.get("tiny", [f"train.steps={last_committed + 2}", "train.log_every=1",
                                  "train.eval_every=1000", *FAST])
    metrics = trainer.train(fresh_workdir, config, progress=False)
    assert np.isfinite(metrics["loss"])
    logged = [json.loads(s) for s in (fresh_workdir / "metrics.jsonl").read_text().splitlines()]
    # The resumed run's first logged step follows the last committed checkpoint.
    assert [line["step"] for line in logged if line["stage"] == "train"][-2:] == [
        last_committed + 1, last_committed + 2]
    assert not any("tmp" in p.name for p in checkpoints.iterdir())


def test_metrics_and_tensorboard_events(fresh_workdir):
    config = configs.get("tiny", ["train.steps=4", "train.log_every=2", "train.eval_every=2",
                                  "train.checkpoint_every=2", *FAST])
    trainer.train(fresh_workdir, config, progress=False)
    # Killed after logging step 4 but before its checkpoint committed, a run resumes at 2 and
    # takes steps 3 and 4 again: their earlier rows (and one cut short) give way to the new.
    shutil.rmtree(fresh_workdir / "checkpoints" / "4")
    with open(fresh_workdir / "metrics.jsonl", "a") as f:
        f.write('{"stage": "train", "step": 5, "lo')
    trainer.train(fresh_workdir, config, progress=False)
    lines = [json.loads(s) for s in (fresh_workdir / "metrics.jsonl").read_text().splitlines()]
    train = [line for line in lines if line["stage"] == "train"]
    val = [line for line in lines if line["stage"] == "val"]
    assert [line["step"] for line in train] == [2, 4] and [line["step"] for line in val] == [2, 4]
    for key in ("loss", "grad_norm", "lr", "skipped", "step_time", "tokens_per_s", "mfu",
                "all/video", "all/audio"):
        assert key in train[-1], key
    assert 0 < train[-1]["mfu"] < 1
    tasks = {key.split("/")[0] for key in val[-1]} - {"stage", "step", "time"}
    assert tasks == {t for t, w in config.sequence.task_weights.items() if w > 0}
    assert list((fresh_workdir / "tb").glob("events.out.tfevents.*"))


def test_resume_refuses_another_model_config(fresh_workdir):
    trainer.check_workdir(fresh_workdir, configs.get("tiny"))  # what train() does first
    # train.* may change on resume (e.g. more steps); the model may not.
    trainer.check_workdir(fresh_workdir, configs.get("tiny", ["train.steps=40"]))
    with pytest.raises(ConfigError, match="model.d_model"):
        trainer.check_workdir(fresh_workdir, configs.get("tiny", ["model.d_model=32"]))
    with pytest.raises(ConfigError, match="video_vae.channels"):
        trainer.check_workdir(fresh_workdir, configs.get("tiny", ["video_vae.channels=8"]))


def test_train_refuses_a_workdir_without_latents(tmp_path):
    with pytest.raises(ConfigError, match="tokenizers train"):
        trainer.train(tmp_path, configs.get("tiny"), progress=False)


def test_loss_report_names_every_task_and_modality():
    sums = np.zeros((len(losses.TASKS), 3))
    counts = np.zeros_like(sums)
    sums[1, 0], counts[1, 0] = 6.0, 3.0
    assert losses.report(sums, counts) == {"video_to_caption/text": 2.0, "all/text": 2.0}


def test_bfloat16_compute_keeps_float32_parameters_and_optimizer_state(tiny_workdir):
    losses_by_dtype = {}
    for dtype in ("float32", "bfloat16"):
        config = configs.get("tiny", ["sequence.examples_per_row=1", "train.batch_size=4",
                                      f"model.dtype={dtype}"])
        mesh = sh.make_mesh(config.mesh, jax.devices()[:1])
        _, state, step = trainer.init_state(config, mesh)
        batch = _fixed_batch(config, tiny_workdir, ["text_to_av", "video_to_caption"] * 2)
        with jax.set_mesh(mesh):
            state, metrics = step(state, sh.global_batch(batch, mesh))
        leaves = jax.tree.leaves({"params": state["params"], "opt": state["opt"]})
        assert {x.dtype for x in leaves if jax.numpy.issubdtype(x.dtype, jax.numpy.floating)} \
            == {jax.numpy.dtype("float32")}
        losses_by_dtype[dtype] = float(metrics["loss"])
    # Same weights and batch: bf16 rounding moves the loss only slightly.
    np.testing.assert_allclose(losses_by_dtype["bfloat16"], losses_by_dtype["float32"],
                               rtol=2e-2)


def test_cli_config_of_a_workdir_fills_missing_sections_from_its_named_config(tmp_path):
    import argparse
    import dataclasses

    from o1.cli.train import train_config

    config = configs.get("quickstart")
    old = dataclasses.asdict(config)
    del old["model"], old["train"]  # a config.json written before these sections existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    args = argparse.Namespace(config=None, workdir=str(tmp_path), overrides=["train.steps=7"])
    loaded = train_config(args)
    assert loaded.model == config.model
    assert loaded.train == dataclasses.replace(config.train, steps=7)
