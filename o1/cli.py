"""The `o1` command line.

    o1 data build avshapes --out DIR [--config NAME] [--num-train N ...] [--seed S] [key=value ...]
    o1 data build folder --src DIR --captions FILE --out DIR [--config NAME] [--allow-silent]
    o1 data export --data DIR --split test --num N --out OUT
    o1 data info --data DIR
    o1 data encode --workdir W --data DIR [--overwrite]
    o1 tokenizers train --workdir W --data DIR [--config NAME] [key=value ...]
    o1 tokenizers eval --workdir W --data DIR [--split validation] [--num N]
    o1 train --workdir W [--config NAME] [key=value ...]
    o1 config show [--config NAME] [key=value ...]

Heavy libraries are imported inside the commands, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence


def _add_config_args(parser: argparse.ArgumentParser, default: str = "quickstart") -> None:
    parser.add_argument("--config", default=default,
                        help=f"named config to start from (default: {default})")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted config overrides, e.g. data.fps=8 data.noise_level=0")


def _config(args: argparse.Namespace, extra: Sequence[str] = ()):
    from o1 import configs
    return configs.get(args.config, [*args.overrides, *extra])


def _cmd_build_avshapes(args: argparse.Namespace) -> None:
    from o1.train import datasets

    extra = [f"data.{key}={value}" for key, value in
             (("num_train", args.num_train), ("num_val", args.num_val),
              ("num_test", args.num_test)) if value is not None]
    if args.seed is not None:
        extra.append(f"seed={args.seed}")
    config = _config(args, extra)
    d = config.data
    print(f"AV-Shapes ({config.name}): {d.height}x{d.width} px, {config.num_frames} frames at "
          f"{d.fps} fps, {config.num_samples} samples at {d.sample_rate} Hz; train "
          f"{d.num_train}, validation {d.num_val}, test {d.num_test}"
          + (f", holdout {d.num_holdout} ({', '.join(d.holdout)})" if d.holdout else ""))
    start = time.perf_counter()
    out = datasets.build_avshapes(config, args.out, overwrite=args.overwrite)
    _print_summary(out, time.perf_counter() - start)


def _cmd_build_folder(args: argparse.Namespace) -> None:
    from o1.train import folder

    config = _config(args)
    start = time.perf_counter()
    report = folder.build_folder(config, args.src, args.captions, args.out,
                                 allow_silent=args.allow_silent, overwrite=args.overwrite)
    print(report.summary())
    if report.num_clips:
        _print_summary(args.out, time.perf_counter() - start)


def _print_summary(out, seconds: float) -> None:
    from o1.train import datasets

    builder = datasets.load_builder(out)
    splits = {name: info.num_examples for name, info in builder.info.splits.items()}
    size = sum(f.stat().st_size for f in datasets.dataset_dir(out).iterdir())
    clips = sum(splits.values())
    print(f"wrote {out}: {splits}, {size / 1e6:.1f} MB ({size / max(clips, 1) / 1e3:.1f} "
          f"kB/clip) in {seconds:.1f} s")


def _cmd_export(args: argparse.Namespace) -> None:
    from o1.train import export

    paths = export.export(args.data, args.split, args.num, args.out)
    print(f"wrote {len(paths)} clips (.mp4 + .json) to {args.out}")


def _cmd_info(args: argparse.Namespace) -> None:
    from o1.train import datasets

    builder = datasets.load_builder(args.data)
    config = datasets.load_config(args.data)
    print(f"{datasets.dataset_dir(args.data)}  (config {config.name})")
    for name, info in sorted(builder.info.splits.items()):
        print(f"  {name:<11} {info.num_examples:>7} clips")
    print(config.to_json())


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


def _cmd_tokenizers_train(args: argparse.Namespace) -> None:
    from o1.tokenizers import train

    config = _tokenizer_config(args)
    seconds = train.train_tokenizers(args.workdir, args.data, config)
    print("tokenizers trained in " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
          + f"; total {sum(seconds.values()):.1f} s")


def _cmd_tokenizers_eval(args: argparse.Namespace) -> None:
    from o1.tokenizers import evaluate

    report = evaluate.evaluate(args.workdir, args.data, args.split, args.num)
    print(evaluate.format_report(report))
    print(f"saved {args.workdir}/eval/tokenizers/report.json and side-by-side mp4s")


def _cmd_encode(args: argparse.Namespace) -> None:
    from o1.tokenizers import cache

    start = time.perf_counter()
    out = cache.encode_dataset(args.workdir, args.data, overwrite=args.overwrite)
    _print_summary(out, time.perf_counter() - start)


def _train_config(args: argparse.Namespace):
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


def _cmd_train(args: argparse.Namespace) -> None:
    from o1 import sharding

    config = _train_config(args)
    sharding.initialize_distributed(config.mesh)  # before anything else touches the devices
    from o1.train import trainer
    from o1.train.loop import StopRequest

    start = time.perf_counter()
    with StopRequest() as stop:
        last = trainer.train(args.workdir, config, stop)
    keys = ("loss", "steps_per_s", "tokens_per_s", "mfu")
    print(f"trained {config.train.steps} steps in {time.perf_counter() - start:.1f} s; "
          + ", ".join(f"{k} {last[k]:.4g}" for k in keys if k in last))


def _cmd_config_show(args: argparse.Namespace) -> None:
    config = _config(args)
    print(config.to_json())
    print(f"# frames T={config.num_frames}, samples N={config.num_samples}, "
          f"k={config.latent_ratio} audio latents per video latent")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="o1", description="Train and sample one transformer over text, video and audio.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="build, inspect and export datasets")
    data_cmds = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    build = data_cmds.add_parser("build", help="build a dataset (array_record, TFDS format)")
    build_cmds = build.add_subparsers(dest="source", required=True, metavar="SOURCE")

    av = build_cmds.add_parser("avshapes", help="generate the AV-Shapes dataset",
                               description="Generate AV-Shapes clips deterministically.")
    av.add_argument("--out", required=True, help="dataset directory to create")
    av.add_argument("--num-train", type=int, help="train clips (default from the config)")
    av.add_argument("--num-val", type=int, help="validation clips")
    av.add_argument("--num-test", type=int, help="test clips")
    av.add_argument("--seed", type=int, help="generation seed (default: the config's seed)")
    av.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    _add_config_args(av)
    av.set_defaults(func=_cmd_build_avshapes)

    fo = build_cmds.add_parser(
        "folder", help="turn a folder of videos with sound into a dataset",
        description="Decode, resample (fps, centre crop + resize, sample rate) and cut a "
                    "folder of videos into clips of the config's geometry. Files that cannot "
                    "be used are reported by name and skipped.")
    fo.add_argument("--src", required=True, help="folder of videos (searched recursively)")
    fo.add_argument("--captions", required=True,
                    help="JSONL ({\"file\": ..., \"caption\": ...} per line) or CSV with "
                         "columns file,caption; file names relative to --src")
    fo.add_argument("--out", required=True, help="dataset directory to create")
    fo.add_argument("--allow-silent", action="store_true",
                    help="keep videos without an audio stream, with silent audio")
    fo.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    _add_config_args(fo)
    fo.set_defaults(func=_cmd_build_folder)

    ex = data_cmds.add_parser("export", help="write clips as .mp4 + .json to watch and check",
                              description="Write N clips of a split as NAME.mp4 (H.264 + AAC) "
                                          "and NAME.json (caption and metadata).")
    ex.add_argument("--data", required=True, help="dataset directory")
    ex.add_argument("--split", default="test", help="split to export (default: test)")
    ex.add_argument("--num", type=int, default=8, help="clips to export (default: 8)")
    ex.add_argument("--out", required=True, help="folder to write into")
    ex.set_defaults(func=_cmd_export)

    info = data_cmds.add_parser("info", help="print a dataset's splits and config")
    info.add_argument("--data", required=True, help="dataset directory")
    info.set_defaults(func=_cmd_info)

    enc = data_cmds.add_parser(
        "encode", help="cache latents of every split with the workdir's frozen tokenizers",
        description="Encode every split of a clip dataset into <workdir>/latents/: caption ids, "
                    "normalized video latents and audio latents.")
    enc.add_argument("--workdir", required=True, help="run directory with trained tokenizers")
    enc.add_argument("--data", required=True, help="clip dataset directory")
    enc.add_argument("--overwrite", action="store_true", help="replace an existing cache")
    enc.set_defaults(func=_cmd_encode)

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
    tr.set_defaults(func=_cmd_tokenizers_train)
    ev = tok_cmds.add_parser(
        "eval", help="reconstruction report: PSNR, SSIM, audio onsets and pitch, throughput",
        description="Reconstruct clips with the frozen tokenizers; print and save the report "
                    "and a few original | reconstruction mp4s under <workdir>/eval/tokenizers/.")
    ev.add_argument("--workdir", required=True, help="run directory with trained tokenizers")
    ev.add_argument("--data", required=True, help="clip dataset directory")
    ev.add_argument("--split", default="validation", help="split to evaluate")
    ev.add_argument("--num", type=int, default=None, help="clips to evaluate (default: all)")
    ev.set_defaults(func=_cmd_tokenizers_eval)

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
    tn.set_defaults(func=_cmd_train)

    cfg = commands.add_parser("config", help="inspect configs")
    cfg_cmds = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    show = cfg_cmds.add_parser("show", help="print a resolved config as JSON")
    _add_config_args(show)
    show.set_defaults(func=_cmd_config_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("o1").setLevel(logging.INFO)
    from o1.config import ConfigError
    from o1.serve.media import MediaError
    from o1.train.datasets import DatasetError
    from o1.train.loop import Preempted

    try:
        args.func(args)
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


if __name__ == "__main__":
    sys.exit(main())
