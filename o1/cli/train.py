"""`o1 train`: the unified transformer on a workdir's latent cache, sharded over every device."""

from __future__ import annotations

import argparse
import time


def train_config(args: argparse.Namespace):
    """--config NAME, else the config of the workdir's last transformer run, else the
    workdir's tokenizer config; then the overrides."""
    import pathlib

    from o1 import config as config_lib
    from o1 import configs

    if args.config:
        return configs.get(args.config, args.overrides)
    workdir = pathlib.Path(args.workdir)
    for path in (workdir / "checkpoints" / "config.json", workdir / "config.json"):
        if path.exists():
            return config_lib.apply_overrides(config_lib.load(path), args.overrides)
    raise FileNotFoundError(f"{workdir} has no config.json; train the tokenizers first "
                            f"(`o1 tokenizers train --workdir {workdir} --data DATA`) or pass "
                            f"--config")


def _train(args: argparse.Namespace) -> None:
    from o1 import sharding

    config = train_config(args)
    sharding.initialize_distributed(config.mesh)  # before anything else touches the devices
    from o1.train import trainer
    from o1.train.loop import StopRequest

    start = time.perf_counter()
    with StopRequest() as stop:
        last = trainer.train(args.workdir, config, stop)
    keys = ("loss", "steps_per_s", "tokens_per_s", "mfu")
    print(f"trained {config.train.steps} steps in {time.perf_counter() - start:.1f} s; "
          + ", ".join(f"{k} {last[k]:.4g}" for k in keys if k in last))


def add_commands(commands: argparse._SubParsersAction) -> None:
    tn = commands.add_parser(
        "train", help="train the unified transformer on the latent cache (resumable)",
        description="Train the transformer on <workdir>/latents, sharded over every device "
                    "(mesh.data/fsdp/tensor). Running it again resumes from the latest "
                    "committed checkpoint; SIGTERM or Ctrl-C saves first. Metrics go to "
                    "<workdir>/tb and <workdir>/metrics.jsonl.")
    tn.add_argument("--workdir", required=True,
                    help="run directory with tokenizers and a latent cache")
    tn.add_argument("--config", default=None,
                    help="named config (default: the workdir's last run, else its tokenizers')")
    tn.add_argument("overrides", nargs="*", metavar="key=value",
                    help="dotted config overrides, e.g. train.steps=2000 model.dtype=float32")
    tn.set_defaults(func=_train)
