"""One process of a multi-process job, launched by test_multihost.py (not a test itself).

    python multihost_worker.py step --out OUT [--coordinator HOST:PORT --num-processes N
                                               --process-id I]
    python multihost_worker.py train --out OUT --workdir W --steps S [same options]

`step` takes one train step of the tiny model, set up as `o1.train.trainer.train` does, on a
fixed synthetic global batch of which this process feeds its own rows; `train` runs
`trainer.train` itself. Either writes its metrics as JSON to OUT. The caller sets XLA_FLAGS
(this process's fake CPU devices) and JAX_PLATFORMS=cpu.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import jax
import numpy as np
import optax

from o1 import configs
from o1 import sharding as sh
from o1.batch import only_batch
from o1.config import TASKS, Config, MeshConfig
from o1.sequence import BOS_ID, EOS_ID, SequenceBuilder
from o1.train import trainer

# 8 global devices; rows split over data x fsdp = 4 devices, two micro-batches of 4 rows.
MESH = dict(data=2, fsdp=2, tensor=2)
BATCH_SIZE, GRAD_ACCUM = 8, 2


def job_config(args: argparse.Namespace) -> Config:
    config = configs.get("tiny")
    mesh = MeshConfig(**MESH, coordinator_address=args.coordinator or "",
                      num_processes=args.num_processes, process_id=args.process_id)
    train = dataclasses.replace(config.train, batch_size=BATCH_SIZE, grad_accum=GRAD_ACCUM)
    if args.mode == "train":
        train = dataclasses.replace(train, steps=args.steps, log_every=1,
                                    eval_every=args.steps, checkpoint_every=2)
    return dataclasses.replace(config, mesh=mesh, train=train)


def synthetic_batch(config: Config) -> dict[str, np.ndarray]:
    """The same global batch [B, L, ...] in every process: random latents and captions, every
    task with a non-zero weight in turn, all draws seeded."""
    builder = SequenceBuilder(config)
    tasks = [task for task in TASKS if config.sequence.task_weights[task] > 0]
    rng = np.random.default_rng(0)
    per_row = config.sequence.examples_per_row
    built = []
    for i in range(config.train.batch_size * per_row):
        example = {
            "text_ids": np.array([BOS_ID, *rng.integers(6, config.text.vocab_size, 8), EOS_ID],
                                 np.int32),
            "video_latents": rng.normal(size=(config.num_video_latents, *config.latent_grid,
                                              config.video_vae.channels)).astype(np.float32),
            "audio_latents": rng.normal(size=(config.num_audio_latents,
                                              config.audio.channels)).astype(np.float32),
        }
        built.append(builder.build(example, tasks[i % len(tasks)], rng))
    rows = [built[r:r + per_row] for r in range(0, len(built), per_row)]
    return builder.batch(rows, config.seq_len)


def one_step(config: Config) -> dict[str, float]:
    mesh = sh.make_mesh(config.mesh)
    _, state, train_step = trainer.init_state(config, mesh)
    full = only_batch(synthetic_batch(config))
    rows = trainer.rows_per_process(config)
    first = jax.process_index() * rows
    local = {k: v[first:first + rows] for k, v in full.items()}
    with jax.set_mesh(mesh):
        state, metrics = train_step(state, sh.global_batch(local, mesh))
        param_norm = jax.jit(optax.tree.norm)(state["params"])
    host = jax.device_get(metrics)  # as train() logs them: every value must be replicated
    return {"loss": float(host["loss"]), "grad_norm": float(host["grad_norm"]),
            "param_norm": float(param_norm), "skipped": float(host["skipped"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("step", "train"))
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--coordinator", default="")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=-1)
    parser.add_argument("--workdir", type=pathlib.Path)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    config = job_config(args)
    sh.initialize_distributed(config.mesh)
    sh.initialize_distributed(config.mesh)  # a second call is a no-op
    if args.mode == "step":
        result = one_step(config)
    else:
        result = trainer.train(args.workdir, config, progress=False)
    result.update(process_index=jax.process_index(), process_count=jax.process_count(),
                  local_devices=jax.local_device_count(), devices=jax.device_count())
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
