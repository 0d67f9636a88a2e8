"""`o1 tokenizers`: train the text tokenizer and the video and audio VAEs, and measure how
well they reconstruct clips."""

from __future__ import annotations

import argparse


def _tokenizer_config(args: argparse.Namespace):
    """The config to train tokenizers with: the workdir's, else --config, else the dataset's."""
    from o1 import config as config_lib
    from o1 import configs
    from o1.tokenizers import bundle
    from o1.train import datasets

    saved = bundle.config_path(args.workdir)
    if saved.exists() and args.config is None:
        return config_lib.apply_overrides(config_lib.load(saved), args.overrides)
    name = args.config or datasets.load_config(args.data).name
    return configs.get(name, args.overrides)


def _train(args: argparse.Namespace) -> None:
    from o1.train import tokenizers as tok_train

    config = _tokenizer_config(args)
    seconds = tok_train.train_tokenizers(args.workdir, args.data, config)
    print("tokenizers trained in " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
          + f"; total {sum(seconds.values()):.1f} s")


def _eval(args: argparse.Namespace) -> None:
    from o1.eval import tokenizers as tok_eval

    report = tok_eval.evaluate(args.workdir, args.data, args.split, args.num)
    print(tok_eval.format_report(report))
    print(f"saved {args.workdir}/eval/tokenizers/report.json and side-by-side mp4s")


def add_commands(commands: argparse._SubParsersAction) -> None:
    tok = commands.add_parser("tokenizers", help="train and evaluate the tokenizers")
    tok_cmds = tok.add_subparsers(dest="tokenizers_command", required=True,
                                  metavar="SUBCOMMAND")
    tr = tok_cmds.add_parser(
        "train", help="train the text tokenizer, video VAE and audio VAE (resumable)",
        description="Train SentencePiece, the causal video VAE and the audio mel-VAE into "
                    "--workdir, then measure latent statistics. Running it again resumes; "
                    "SIGTERM or Ctrl-C saves a checkpoint first.")
    tr.add_argument("--workdir", required=True, help="run directory (created if missing)")
    tr.add_argument("--data", required=True, help="clip dataset directory")
    tr.add_argument("--config", default=None,
                    help="named config (default: the workdir's, else the dataset's)")
    tr.add_argument("overrides", nargs="*", metavar="key=value",
                    help="dotted config overrides, e.g. video_vae.steps=500")
    tr.set_defaults(func=_train)
    ev = tok_cmds.add_parser(
        "eval", help="reconstruction report: PSNR, SSIM, audio onsets and pitch, throughput",
        description="Reconstruct clips with the frozen tokenizers; print and save the report "
                    "and a few original | reconstruction mp4s under <workdir>/eval/tokenizers/.")
    ev.add_argument("--workdir", required=True, help="run directory with trained tokenizers")
    ev.add_argument("--data", required=True, help="clip dataset directory")
    ev.add_argument("--split", default="validation", help="split to evaluate")
    ev.add_argument("--num", type=int, default=None, help="clips to evaluate (default: all)")
    ev.set_defaults(func=_eval)
