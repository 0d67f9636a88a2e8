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

    config = named_config(args, [f"seed={args.seed}"] if args.seed is not None else [])
    start = time.perf_counter()
    report = folder.build_folder(config, args.src, args.captions, args.out,
                                 allow_silent=args.allow_silent, overwrite=args.overwrite,
                                 val_share=args.val_share, test_share=args.test_share)
    print(report.summary())
    _print_summary(args.out, time.perf_counter() - start)
    print(f"report: {args.out}/{folder.REPORT_FILE}")


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

    split = args.split or export.default_split(args.data)
    paths = export.export(args.data, split, args.num, args.out)
    print(f"wrote {len(paths)} {split} clips (.mp4 + .json) to {args.out}")


def _info(args: argparse.Namespace) -> None:
    import pathlib

    from o1.train import datasets, folder

    builder = datasets.load_builder(args.data)
    config = datasets.load_config(args.data)
    print(f"{datasets.dataset_dir(args.data)}  (config {config.name})")
    for name, info in sorted(builder.info.splits.items()):
        print(f"  {name:<11} {info.num_examples:>7} clips")
    report = pathlib.Path(args.data) / folder.REPORT_FILE
    if report.exists():
        print(f"  build report: {report}")
    print(config.to_json())


def _encode(args: argparse.Namespace) -> None:
    from o1.train import latents

    start = time.perf_counter()
    out = latents.encode_dataset(args.workdir, args.data, overwrite=args.overwrite)
    _print_summary(out, time.perf_counter() - start)
    _print_cut_captions(out)


def _print_cut_captions(latents_dir) -> None:
    """Names the captions whose ids training cuts to sequence.max_text_len (the workdir's)."""
    from o1.sequence import split_captions
    from o1.train import datasets

    limit = datasets.load_config(latents_dir).sequence.max_text_len
    builder = datasets.load_builder(latents_dir)
    cut = []
    for split in sorted(builder.info.splits.keys()):
        source = datasets.data_source(latents_dir, split)
        for i in range(len(source)):
            ex = source[i]
            every = ex.get("every_text_ids", ())
            # A clip captioned in every language: each of its captions, numbered.
            captions = split_captions(every) if len(every) else [ex["text_ids"]]
            for n, ids in enumerate(captions):
                if len(ids) > limit:
                    which = f" caption {n + 1}" if len(captions) > 1 else ""
                    cut.append(f"{split} {ex['id'].decode()}{which}: {len(ids)} tokens")
    if cut:
        print(f"{len(cut)} captions are longer than sequence.max_text_len = {limit} tokens (with "
              f"bos and eos); training and the caption loss see only their first {limit - 1} "
              "tokens and eos:")
        print("\n".join(f"  {line}" for line in cut))


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
                    "folder of videos into clips of the config's geometry, split into train, "
                    "validation and test by video (the clips of one video stay in one split). "
                    "Files that cannot be used are reported by name and skipped; the report "
                    "is also saved as report.json in --out.")
    fo.add_argument("--src", required=True, help="folder of videos (searched recursively)")
    fo.add_argument("--captions", required=True,
                    help="JSONL ({\"file\": ..., \"caption\": ...} per line) or CSV with "
                         "columns file,caption; file names relative to --src")
    fo.add_argument("--out", required=True, help="dataset directory to create")
    fo.add_argument("--allow-silent", action="store_true",
                    help="keep videos without sound (no audio stream, or an all-zero track) "
                         "with silent audio, marked \"silent\": true in their metadata")
    fo.add_argument("--val-share", type=float, default=0.1,
                    help="share of the videos held out for validation (default: 0.1; at least "
                         "one video when there are two or more)")
    fo.add_argument("--test-share", type=float, default=0.1,
                    help="share of the videos held out for test (default: 0.1)")
    fo.add_argument("--seed", type=int,
                    help="seed of the split of videos (default: the config's seed)")
    fo.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    add_config_args(fo)
    fo.set_defaults(func=_build_folder)

    ex = data_cmds.add_parser("export", help="write clips as .mp4 + .json to watch and check",
                              description="Write N clips of a split as NAME.mp4 (H.264 + AAC) "
                                          "and NAME.json (caption and metadata).")
    ex.add_argument("--data", required=True, help="dataset directory")
    ex.add_argument("--split", default=None,
                    help="split to export (default: test, else validation, else train)")
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
