"""The `o1` command line.

    o1 data build avshapes --out DIR [--config NAME] [--num-train N ...] [--seed S] [key=value ...]
    o1 data build folder --src DIR --captions FILE --out DIR [--config NAME] [--allow-silent]
                         [--val-share F] [--test-share F] [--seed S]
    o1 data export --data DIR [--split test] --num N --out OUT
    o1 data info --data DIR
    o1 data encode --workdir W --data DIR [--overwrite]
    o1 tokenizers train --workdir W --data DIR [--config NAME] [key=value ...]
    o1 tokenizers eval --workdir W --data DIR [--split validation] [--num N]
    o1 train --workdir W [--config NAME] [key=value ...]
    o1 generate --workdir W --prompt TEXT --out clip.mp4 [--seconds S] [--steps N] [--profile]
    o1 caption --workdir W clip.mp4 [--json]
    o1 dub --workdir W silent.mp4 --out dubbed.mp4 [--prompt TEXT]
    o1 visualize --workdir W sound.wav --out clip.mp4 [--prompt TEXT] [--seconds S]
    o1 animate --workdir W --image first.png --prompt TEXT --out clip.mp4
    o1 extend --workdir W clip.mp4 --seconds S --out longer.mp4 [--prompt TEXT]
    o1 eval --workdir W [--split test] [--num N] [--out report.json]
    o1 judge CLIP.mp4 --prompt TEXT [--at SECONDS:TEXT ...] [--window 10]
             [--workdir W | --config NAME] [--json OUT]
    o1 serve --workdir W [--host 127.0.0.1] [--port 7860] [--allowed-host NAME] [--max-storage 2gb]
    o1 quickstart [--workdir runs/quickstart] [--config quickstart] [--no-serve] [key=value ...]
    o1 bench NAME [args ...]    (NAME: train_step, sampling, scaling, context_use, ...)
    o1 config show [--config NAME] [key=value ...]

Each command group is a module of this package that adds its commands to the parser; the
work itself lives with its subsystem (the studio's process in o1.serve.server, the profile
table beside the pipeline's timings, the benchmarks in o1.benchmarks). Heavy libraries are
imported inside the commands, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import sys
from collections.abc import Sequence

# The modules of o1.cli that add commands, in the order `o1 --help` lists them.
GROUPS = ("data", "tokenizers", "train", "sample", "eval", "judge", "quickstart", "serve",
          "bench", "config")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other refusal of `o1`."""

    def error(self, message: str):
        self.exit(2, f"o1: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="o1", description="Train and sample one transformer over text, video and audio.")
    parser.add_argument("--version", action="version",
                        version=f"o1 {importlib.metadata.version('o1')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"o1.cli.{group}").add_commands(commands)
    return parser


def _flag(field: str) -> str:
    """A request field as the sampling commands spell its flag."""
    return "--" + field.replace("_", "-")


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("o1").setLevel(logging.INFO)
    from o1.config import ConfigError
    from o1.media import MediaError
    from o1.sampler import RequestError
    from o1.train.datasets import DatasetError
    from o1.train.loop import Preempted

    try:
        args.func(args)
    except RequestError as e:
        print(f"o1: error: {e.named(_flag)}", file=sys.stderr)
        return 2
    except (ConfigError, DatasetError, MediaError, FileNotFoundError) as e:
        print(f"o1: error: {e}", file=sys.stderr)
        return 2
    except Preempted as e:
        print(f"o1: {e}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("o1: interrupted; nothing partial was kept", file=sys.stderr)
        return 130
    return 0
