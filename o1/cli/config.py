"""`o1 config show`, and the `--config NAME key=value ...` arguments every command that starts
from a named config shares."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def add_config_args(parser: argparse.ArgumentParser, default: str = "quickstart") -> None:
    parser.add_argument("--config", default=default,
                        help=f"named config to start from (default: {default})")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted config overrides, e.g. data.fps=8 data.noise_level=0")


def named_config(args: argparse.Namespace, extra: Sequence[str] = ()):
    """The config `--config` names, with the overrides and then `extra` applied."""
    from o1 import configs
    return configs.get(args.config, [*args.overrides, *extra])


def _show(args: argparse.Namespace) -> None:
    """The config as JSON on stdout (so `o1 config show > c.json` is a valid file); the derived
    clip geometry, which is not a setting, on stderr."""
    config = named_config(args)
    print(config.to_json())
    print(f"frames T={config.num_frames}, samples N={config.num_samples}, "
          f"k={config.latent_ratio} audio latents per video latent", file=sys.stderr)


def add_commands(commands: argparse._SubParsersAction) -> None:
    cfg = commands.add_parser("config", help="inspect configs")
    cfg_cmds = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    show = cfg_cmds.add_parser(
        "show", help="print a resolved config as JSON (its derived clip geometry on stderr)")
    add_config_args(show)
    show.set_defaults(func=_show)
