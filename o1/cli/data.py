"""`o1 data`: build AV-Shapes or a folder of videos into a dataset, export clips to watch,
print a dataset's splits, and cache its latents."""

from __future__ import annotations

import argparse
import time

from o1.cli.config import add_config_args, named_config


def _build_avshapes(args: argparse.Namespace) -> None:
    from o1.train import datasets

    extra = [f"data.{key}={value}" for key, value in
             (("num_train", args.num_train), ("num_val", args.num_val),
              ("num_test", args.num_test)) if value is not None]
    if args.seed is not None:
        extra.append(f"seed={args.seed}")
    config = named_config(args, extra)
    d = config.data
    print(f"AV-Shapes ({config.name}): {d.height}x{d.width} px, {config.num_frames} frames at "
          f"{d.fps} fps, {config.num_samples} samples at {d.sample_rate} Hz; train "
          f"{d.num_train}, validation {d.num_val}, test {d.num_test}"
          + (f", holdout {d.num_holdout} ({', '.join(d.holdout)})" if d.holdout else ""))
    start = time.perf_counter()
    out = datasets.build_avshapes(config, args.out, overwrite=args.overwrite)
    _print_summary(out, time.perf_counter() - start)


def _build_folder(args: argparse.Namespace) -> None:
    from o1.train import folder

    config = named_config(args)
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


def _export(args: argparse.Namespace) -> None:
    from o1.train import export

    paths = export.export(args.data, args.split, args.num, args.out)
    print(f"wrote {len(paths)} clips (.mp4 + .json) to {args.out}")


def _info(args: argparse.Namespace) -> None:
    from o1.train import datasets

    builder = datasets.load_builder(args.data)
    config = datasets.loadnamed_config(args.data)
    print(f"{datasets.dataset_dir(args.data)}  (config {config.name})")
    for name, info in sorted(builder.info.splits.items()):
        print(f"  {name:<11} {info.num_examples:>7} clips")
    print(config.to_json())


def _encode(args: argparse.Namespace) -> None:
    from o1.train import latents

    start = time.perf_counter()
    out = latents.encode_dataset(args.workdir, args.data, overwrite=args.overwrite)
    _print_summary(out, time.perf_counter() - start)


def add_commands(commands: argparse._SubParsersAction) -> None:
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
    add_config_args(av)
    av.set_defaults(func=_build_avshapes)

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
    add_config_args(fo)
    fo.set_defaults(func=_build_folder)

    ex = data_cmds.add_parser("export", help="write clips as .mp4 + .json to watch and check",
                              description="Write N clips of a split as NAME.mp4 (H.264 + AAC) "
                                          "and NAME.json (caption and metadata).")
    ex.add_argument("--data", required=True, help="dataset directory")
    ex.add_argument("--split", default="test", help="split to export (default: test)")
    ex.add_argument("--num", type=int, default=8, help="clips to export (default: 8)")
    ex.add_argument("--out", required=True, help="folder to write into")
    ex.set_defaults(func=_export)

    info = data_cmds.add_parser("info", help="print a dataset's splits and config")
    info.add_argument("--data", required=True, help="dataset directory")
    info.set_defaults(func=_info)

    enc = data_cmds.add_parser(
        "encode", help="cache latents of every split with the workdir's frozen tokenizers",
        description="Encode every split of a clip dataset into <workdir>/latents/: caption ids, "
                    "normalized video latents and audio latents.")
    enc.add_argument("--workdir", required=True, help="run directory with trained tokenizers")
    enc.add_argument("--data", required=True, help="clip dataset directory")
    enc.add_argument("--overwrite", action="store_true", help="replace an existing cache")
    enc.set_defaults(func=_encode)
