"""The `o1` command line.

    o1 data build avshapes --out DIR [--config NAME] [--num-train N ...] [--seed S] [key=value ...]
    o1 data build folder --src DIR --captions FILE --out DIR [--config NAME] [--allow-silent]
    o1 data export --data DIR --split test --num N --out OUT
    o1 data info --data DIR
    o1 data encode --workdir W --data DIR [--overwrite]
    o1 tokenizers train --workdir W --data DIR [--config NAME] [key=value ...]
    o1 tokenizers eval --workdir W --data DIR [--split validation] [--num N]
    o1 train --workdir W [--config NAME] [key=value ...]
    o1 generate --workdir W --prompt TEXT --out clip.mp4 [--seconds S] [--steps N] [--profile]
    o1 caption --workdir W clip.mp4 [--json]
    o1 dub --workdir W silent.mp4 --out dubbed.mp4 [--prompt TEXT]
    o1 animate --workdir W --image first.png --prompt TEXT --out clip.mp4
    o1 extend --workdir W clip.mp4 --seconds S --out longer.mp4 [--prompt TEXT]
    o1 eval --workdir W [--split test] [--num N] [--out report.json]
    o1 serve --workdir W [--host 127.0.0.1] [--port 7860] [--queue-size N] [--cleanup-age S]
    o1 quickstart [--workdir runs/quickstart] [--config quickstart] [--no-serve] [key=value ...]
    o1 bench NAME [args ...]    (NAME: train_step, sampling, scaling, context_use, ...)
    o1 config show [--config NAME] [key=value ...]

Heavy libraries are imported inside the commands, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib.metadata
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
    from o1.train import tokenizers as tok_train

    config = _tokenizer_config(args)
    seconds = tok_train.train_tokenizers(args.workdir, args.data, config)
    print("tokenizers trained in " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
          + f"; total {sum(seconds.values()):.1f} s")


def _cmd_tokenizers_eval(args: argparse.Namespace) -> None:
    from o1.eval import tokenizers as tok_eval

    report = tok_eval.evaluate(args.workdir, args.data, args.split, args.num)
    print(tok_eval.format_report(report))
    print(f"saved {args.workdir}/eval/tokenizers/report.json and side-by-side mp4s")


def _cmd_encode(args: argparse.Namespace) -> None:
    from o1.train import latents

    start = time.perf_counter()
    out = latents.encode_dataset(args.workdir, args.data, overwrite=args.overwrite)
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


# ---------------------------------------------------------------------------------------------
# Sampling from a trained workdir
# ---------------------------------------------------------------------------------------------

def _flow(args: argparse.Namespace):
    from o1.sampler import FlowOptions
    from o1.serve.pipeline import RequestError

    try:
        return FlowOptions(steps=args.steps, solver=args.solver, shift=args.shift,
                           cfg_video=args.cfg_video, cfg_audio=args.cfg_audio)
    except ValueError as e:
        raise RequestError(str(e)) from None


def _pipeline(args: argparse.Namespace):
    from o1.serve.pipeline import Pipeline

    return Pipeline(args.workdir, args.checkpoint)


def _input(path: str, what: str = "input") -> str:
    import pathlib

    from o1.serve.pipeline import RequestError

    if not pathlib.Path(path).is_file():
        raise RequestError(f"{path}: no such file (the {what})")
    return path


def _output(path: str) -> str:
    import pathlib

    from o1.serve.pipeline import RequestError

    out = pathlib.Path(path)
    if out.suffix.lower() != ".mp4":
        raise RequestError(f"--out {path}: outputs are H.264 + AAC mp4 files; name it *.mp4")
    if not out.parent.is_dir():
        raise RequestError(f"--out {path}: the folder {out.parent} does not exist")
    return path


def _wrote(clip, path: str) -> None:
    clip.write(path)
    print(f"wrote {path}: {clip.seconds:.2f} s, {clip.frames.shape[2]}x{clip.frames.shape[1]} "
          f"at {clip.fps} fps, audio {clip.sample_rate} Hz")


def _cmd_generate(args: argparse.Namespace) -> None:
    out, flow = _output(args.out), _flow(args)
    pipe = _pipeline(args)
    pipe.prompt_ids(args.prompt)
    if args.seconds is not None:
        pipe.check_seconds(args.seconds)
    if args.profile:  # compile every program first, so the timed run is the steady state
        pipe.generate(args.prompt, args.seconds, flow, args.seed + 1).write(out)
    start = time.perf_counter()
    clip = pipe.generate(args.prompt, args.seconds, flow, args.seed)
    _wrote(clip, out)
    wall = time.perf_counter() - start
    if args.profile:
        print(_profile(clip.timings, clip.seconds, wall))


def _profile(timings: dict[str, float], seconds: float, wall: float) -> str:
    steps = [v for k, v in timings.items() if k.startswith("step_")]
    rows = [("encode (context)", timings.get("encode", 0.0)),
            ("prefix (KV cache)", timings.get("prefix", 0.0))]
    rows += [(f"denoising step {i + 1}", v) for i, v in enumerate(steps)]
    rows += [("VAE decode (video + mel)", timings.get("vae_decode", 0.0)),
             ("waveform (vocoder)", timings.get("waveform", 0.0)),
             ("mp4 mux", timings.get("mux", 0.0))]
    lines = [f"  {name:<26} {value * 1e3:9.1f} ms" for name, value in rows]
    lines.append(f"  {'denoising, all steps':<26} {sum(steps) * 1e3:9.1f} ms "
                 f"({len(steps)} steps, {sum(steps) / max(len(steps), 1) * 1e3:.1f} ms each)")
    lines.append(f"  {'total (wall)':<26} {wall * 1e3:9.1f} ms")
    return ("profile (after compilation):\n" + "\n".join(lines)
            + f"\nreal-time factor {seconds / wall:.2f} ({seconds:.2f} s of clip in "
              f"{wall:.2f} s)")


def _cmd_caption(args: argparse.Namespace) -> None:
    import json

    from o1.sampler import TextOptions
    from o1.serve.pipeline import RequestError, read_clip

    path = _input(args.input, "video to caption")
    try:
        options = TextOptions(max_tokens=args.max_tokens, temperature=args.temperature,
                              top_p=args.top_p)
    except ValueError as e:
        raise RequestError(str(e)) from None
    pipe = _pipeline(args)
    clip = read_clip(path, pipe.config)
    text = pipe.caption(clip, options, args.seed)
    if args.json:
        print(json.dumps({"file": path, "caption": text, "seconds": round(clip.seconds, 4),
                          "checkpoint": pipe.step}))
    else:
        print(text)


def _cmd_dub(args: argparse.Namespace) -> None:
    from o1.serve.pipeline import read_clip

    path, out, flow = _input(args.input, "video to dub"), _output(args.out), _flow(args)
    pipe = _pipeline(args)
    pipe.prompt_ids(args.prompt, required=False)
    _wrote(pipe.dub(read_clip(path, pipe.config), args.prompt, flow, args.seed), out)


def _cmd_animate(args: argparse.Namespace) -> None:
    from o1.serve.pipeline import read_image

    path, out, flow = _input(args.image, "image to animate"), _output(args.out), _flow(args)
    pipe = _pipeline(args)
    pipe.prompt_ids(args.prompt)
    image = read_image(path, pipe.config)
    _wrote(pipe.animate(image, args.prompt, args.seconds, flow, args.seed), out)


def _cmd_extend(args: argparse.Namespace) -> None:
    from o1.serve.pipeline import read_clip

    path, out, flow = _input(args.input, "clip to extend"), _output(args.out), _flow(args)
    pipe = _pipeline(args)
    pipe.prompt_ids(args.prompt, required=False)
    pipe.check_seconds(args.seconds)
    clip = read_clip(path, pipe.config)
    _wrote(pipe.extend(clip, args.seconds, args.prompt, flow, args.seed), out)


def _cmd_eval(args: argparse.Namespace) -> None:
    from o1.eval import evaluate

    flow = _flow(args)
    report = evaluate.evaluate(args.workdir, args.split, args.num, args.out, flow, args.seed,
                               step=args.checkpoint)
    print(evaluate.format_report(report))
    print(f"saved {args.out or args.workdir + '/eval/report.json'} and sample mp4s in "
          f"{args.workdir}/eval/samples/ ({report['seconds']:.0f} s)")


def _cmd_serve(args: argparse.Namespace) -> None:
    from o1.serve import studio

    options = studio.StudioOptions(
        host=args.host, port=args.port, out_dir=args.out_dir, max_upload=args.max_upload,
        concurrency=args.concurrency, queue_size=args.queue_size, cleanup_age=args.cleanup_age,
        max_seconds=args.max_seconds, max_steps=args.max_steps, warmup=not args.no_warmup)
    _check_port(options.host, options.port)  # before minutes of loading and compiling
    _serve(args.workdir, options, args.checkpoint)


def _check_port(host: str, port: int) -> None:
    import socket

    from o1.serve.pipeline import RequestError

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise RequestError(f"cannot listen on {host}:{port} ({e.strerror}); pass a free "
                               "--port or another --host") from None


def _serve(workdir: str, options, checkpoint: int | None = None) -> None:
    import signal

    from o1.serve import studio
    from o1.serve.pipeline import RequestError

    start = time.perf_counter()
    served = studio.Studio(workdir, options, checkpoint)
    print(f"loaded {workdir} (checkpoint {served.pipe.step}) in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    if options.warmup:
        print("warming up: compiling every task once ...", flush=True)
        print(f"warm-up done in {served.warm_up():.1f} s", flush=True)
    try:
        app, url = served.launch(block=False)
    except OSError as e:
        raise RequestError(f"cannot listen on {options.host}:{options.port} ({e}); pass a "
                           "free --port") from None
    print(f"o1 studio: serving {workdir} (checkpoint {served.pipe.step}) at {url} "
          f"(files in {served.out_dir}); Ctrl-C stops", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    try:
        app.block_thread()  # returns on Ctrl-C
    finally:
        app.close()
    print("o1 studio: stopped", flush=True)


def _cmd_quickstart(args: argparse.Namespace) -> None:
    from o1.cli import quickstart
    from o1.serve import studio

    config = _config(args)
    options = studio.StudioOptions(host=args.host, port=args.port)
    if not args.no_serve:
        _check_port(options.host, options.port)  # before half an hour of work
    seconds = quickstart.run(args.workdir, config, args.eval_num)
    print(quickstart.summary(seconds), flush=True)
    if not args.no_serve:
        _serve(args.workdir, options)


BENCHMARKS = ("train_step", "sampling", "tokenizer_speed", "scaling", "studio_latency",
              "data_pipeline", "context_use")


def _cmd_bench(args: argparse.Namespace) -> None:
    import pathlib
    import runpy

    from o1.serve.pipeline import RequestError

    root = pathlib.Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / f"{args.name}.py").exists():
        raise RequestError("the benchmarks live in the source checkout (benchmarks/); run "
                           "`o1 bench` from an editable install of it")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    sys.argv = [f"benchmarks/{args.name}.py", *args.args]
    runpy.run_module(f"benchmarks.{args.name}", run_name="__main__")


def _cmd_config_show(args: argparse.Namespace) -> None:
    config = _config(args)
    print(config.to_json())
    print(f"# frames T={config.num_frames}, samples N={config.num_samples}, "
          f"k={config.latent_ratio} audio latents per video latent")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="o1", description="Train and sample one transformer over text, video and audio.")
    parser.add_argument("--version", action="version",
                        version=f"o1 {importlib.metadata.version('o1')}")
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

    def trained_model(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workdir", required=True, help="run directory with a trained model")
        p.add_argument("--checkpoint", type=int, default=None,
                       help="transformer checkpoint step (default: the latest)")

    def sampling(p: argparse.ArgumentParser, flow: bool = True) -> None:
        trained_model(p)
        p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
        if not flow:
            return
        p.add_argument("--steps", type=int, default=12, help="denoising steps (default: 12)")
        p.add_argument("--solver", choices=("euler", "heun"), default="euler",
                       help="ODE solver (default: euler; heun calls the model twice a step)")
        p.add_argument("--shift", type=float, default=1.0,
                       help="noise-level grid shift; > 1 spends more steps at high noise")
        p.add_argument("--cfg-video", type=float, default=3.0,
                       help="guidance scale on video (1 = none; default: 3)")
        p.add_argument("--cfg-audio", type=float, default=3.0,
                       help="guidance scale on audio (1 = none; default: 3)")

    gen = commands.add_parser(
        "generate", help="text -> video with sound (mp4)",
        description="Sample a clip with native sound from a prompt. Clips longer than the "
                    "model's clip length are continued window by window.")
    gen.add_argument("--prompt", required=True, help="what the clip shows")
    gen.add_argument("--out", required=True, help="mp4 file to write")
    gen.add_argument("--seconds", type=float, default=None,
                     help="length in seconds (default: one model clip)")
    gen.add_argument("--profile", action="store_true",
                     help="compile first, then print the time of every stage and the "
                          "real-time factor")
    sampling(gen)
    gen.set_defaults(func=_cmd_generate)

    cap = commands.add_parser("caption", help="video -> caption",
                              description="Describe a video (its first model clip of frames).")
    cap.add_argument("input", help="video file")
    cap.add_argument("--json", action="store_true", help="print a JSON object")
    cap.add_argument("--max-tokens", type=int, default=32, help="longest caption in tokens")
    cap.add_argument("--temperature", type=float, default=0.0,
                     help="sampling temperature (default: 0 = greedy)")
    cap.add_argument("--top-p", type=float, default=1.0, help="nucleus mass (default: 1)")
    sampling(cap, flow=False)
    cap.set_defaults(func=_cmd_caption)

    dub = commands.add_parser("dub", help="silent video -> video with generated sound",
                              description="Generate the sound of a video (any length up to "
                                          "a minute; the output is at the model's frame size "
                                          "and rate).")
    dub.add_argument("input", help="video file (its own sound, if any, is replaced)")
    dub.add_argument("--out", required=True, help="mp4 file to write")
    dub.add_argument("--prompt", default=None, help="optional description to guide the sound")
    sampling(dub)
    dub.set_defaults(func=_cmd_dub)

    ani = commands.add_parser("animate", help="image + prompt -> video with sound",
                              description="Make a clip whose first frame is the image.")
    ani.add_argument("--image", required=True, help="first frame (png, jpg, ...)")
    ani.add_argument("--prompt", required=True, help="what happens")
    ani.add_argument("--out", required=True, help="mp4 file to write")
    ani.add_argument("--seconds", type=float, default=None,
                     help="length in seconds (default: one model clip)")
    sampling(ani)
    ani.set_defaults(func=_cmd_animate)

    ext = commands.add_parser("extend", help="clip -> the same clip continued",
                              description="Continue a clip's video and sound.")
    ext.add_argument("input", help="video file to continue")
    ext.add_argument("--seconds", type=float, required=True, help="seconds to add")
    ext.add_argument("--out", required=True, help="mp4 file to write")
    ext.add_argument("--prompt", default=None, help="optional description to guide it")
    sampling(ext)
    ext.set_defaults(func=_cmd_extend)

    ev = commands.add_parser(
        "eval", help="judge every task on AV-Shapes clips (colour, shape, count, speed, sound, "
                     "sync, captions)",
        description="Regenerate AV-Shapes clips of a split from the workdir's config, run "
                    "text_to_av, image_to_video, video_to_audio and video_to_caption on them, "
                    "and judge the results from pixels and samples, next to the ground "
                    "truth's own scores (the ceiling) and a shuffled audio pairing (the floor).")
    ev.add_argument("--split", default="test", help="AV-Shapes split (default: test)")
    ev.add_argument("--num", type=int, default=50, help="clips to judge (default: 50)")
    ev.add_argument("--out", default=None,
                    help="report JSON (default: <workdir>/eval/report.json)")
    sampling(ev)
    ev.set_defaults(func=_cmd_eval)

    qs = commands.add_parser(
        "quickstart", help="dataset -> tokenizers -> latents -> train -> eval -> studio",
        description="Everything from a clean checkout: build AV-Shapes, train the tokenizers, "
                    "cache latents, train the transformer, judge it with `o1 eval` and serve "
                    "the studio. Finished stages are skipped on a rerun with the same config "
                    "(W/quickstart.json); an interrupted one resumes.")
    qs.add_argument("--workdir", default="runs/quickstart",
                    help="run directory (default: runs/quickstart)")
    qs.add_argument("--eval-num", type=int, default=50,
                    help="test clips `o1 eval` judges (default: 50)")
    qs.add_argument("--no-serve", action="store_true", help="stop after the eval")
    qs.add_argument("--host", default="127.0.0.1", help="studio interface (default: 127.0.0.1)")
    qs.add_argument("--port", type=int, default=7860, help="studio port (default: 7860)")
    _add_config_args(qs)
    qs.set_defaults(func=_cmd_quickstart)

    srv = commands.add_parser(
        "serve", help="the studio: every task in the browser and over HTTP (Gradio)",
        description="Load a workdir's model, compile every task once, and serve the studio "
                    "web app; every tab is also an HTTP endpoint for gradio_client.")
    trained_model(srv)
    srv.add_argument("--host", default="127.0.0.1",
                     help="interface to bind (default: 127.0.0.1, this machine only; "
                          "0.0.0.0 serves the network)")
    srv.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    srv.add_argument("--out-dir", default=None,
                     help="uploads and outputs, the only folder served "
                          "(default: <workdir>/samples/studio)")
    srv.add_argument("--max-upload", default="50mb", help="largest upload (default: 50mb)")
    srv.add_argument("--concurrency", type=int, default=1,
                     help="requests running at once on the device (default: 1)")
    srv.add_argument("--queue-size", type=int, default=16,
                     help="requests allowed to wait; more are refused as busy (default: 16)")
    srv.add_argument("--cleanup-age", type=int, default=3600,
                     help="seconds after which uploads and outputs are deleted "
                          "(default: 3600)")
    srv.add_argument("--max-seconds", type=float, default=20.0,
                     help="longest clip a request may ask for (default: 20)")
    srv.add_argument("--max-steps", type=int, default=100,
                     help="most denoising steps a request may ask for (default: 100)")
    srv.add_argument("--no-warmup", action="store_true",
                     help="listen at once; the first requests then pay compilation")
    srv.set_defaults(func=_cmd_serve)

    bench = commands.add_parser(
        "bench", help="run a benchmark (from the source checkout); tables go to BENCHMARKS.md",
        description="Runs benchmarks/NAME.py with the arguments after NAME (see "
                    "`o1 bench NAME --help`): it prints a table and appends it to "
                    "BENCHMARKS.md with the date, the machine and the command.")
    bench.add_argument("name", choices=BENCHMARKS, help="which benchmark")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    bench.set_defaults(func=_cmd_bench)

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
    from o1.media import MediaError
    from o1.serve.pipeline import RequestError
    from o1.train.datasets import DatasetError
    from o1.train.loop import Preempted

    try:
        args.func(args)
    except (ConfigError, DatasetError, MediaError, RequestError, FileNotFoundError) as e:
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
