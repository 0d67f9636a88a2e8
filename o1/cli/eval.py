"""`o1 eval`: judge every task of a trained workdir on AV-Shapes clips."""

from __future__ import annotations

import argparse

from o1.cli.sample import SampleDefaults, checks, flow_options, sampling_flags


def _eval(args: argparse.Namespace) -> None:
    from o1.eval import evaluate

    check = checks(args)
    flow = flow_options(args, check)
    text = check.caption_options(beams=args.beams)
    report = evaluate.evaluate(args.workdir, args.split, args.num, args.out, flow, args.seed,
                               step=args.checkpoint, seeds=args.seeds, languages=args.lang,
                               text=text)
    print(evaluate.format_report(report))
    print(f"saved {args.out or args.workdir + '/eval/report.json'} and sample mp4s in "
          f"{args.workdir}/eval/samples/ ({report['seconds']:.0f} s)")


def _eval_runs(args: argparse.Namespace) -> None:
    from o1.eval import judge, runs

    combined = runs.combine([runs.read(path) for path in args.reports])
    print(runs.format_combined(combined))
    if args.out:
        print(f"saved {judge.write_report(combined, args.out)}")


def add_commands(commands: argparse._SubParsersAction) -> None:
    ev = commands.add_parser(
        "eval", formatter_class=SampleDefaults,
        help="judge every task on AV-Shapes clips (colour, shape, count, speed, sound, sync, "
             "motion across latents, first frames, captions)",
        description="Regenerate AV-Shapes clips of a split from the workdir's config, run "
                    "text_to_av, image_to_video, video_to_audio, audio_to_video and "
                    "video_to_caption on them, and judge the results from pixels and samples, "
                    "next to the ground truth's own scores (the ceiling) and a shuffled audio "
                    "pairing (the floor). "
                    "Counts are of the blobs a viewer sees; objects jumping where one video "
                    "latent ends and the next begins show as a jump_ratio above 1; an "
                    "animated image's frame 0 is compared (PSNR) with the tokenizers' round "
                    "trip of the image.")
    ev.add_argument("--split", default="test", help="AV-Shapes split (default: test)")
    ev.add_argument("--num", type=int, default=50, help="clips to judge (default: 50)")
    ev.add_argument("--seeds", type=int, default=1,
                    help="samples of every task per clip, each with its own seed: rows average "
                         "them, and the dub row adds how often all seeds' sounds agree on the "
                         "video's bounces (dub_agreement); multiplies the sampling time "
                         "(default: 1)")
    ev.add_argument("--lang", nargs="+", default=[], metavar="LANG",
                    help="also generate from each clip's caption written in each of these "
                         "languages (of the model's text.languages), and caption in each, on "
                         "the same clips and seeds: rows 'text_to_av [it]', 'video_to_caption "
                         "[it]', ...")
    ev.add_argument("--out", default=None,
                    help="report JSON (default: <workdir>/eval/report.json)")
    ev.add_argument("--beams", type=int, help="partial captions kept while decoding captions "
                                              "(beam search; 1 = greedy)")
    sampling_flags(ev)
    ev.set_defaults(func=_eval)

    runs = commands.add_parser(
        "eval-runs",
        help="several runs' `o1 eval` reports as one: mean and spread over the runs, and each "
             "language's gap to the first",
        description="Read the `o1 eval` reports of several runs of one configuration "
                    "(training seeds, say), judged alike (the same split, --num, --seed, "
                    "--seeds, flow and --lang), and print each row's metrics as mean±sd over "
                    "the runs; for reports made with --lang, also each language's "
                    "text_to_av and video_to_caption minus the first language's, taken run by "
                    "run on the same clips and seeds, as mean±sd and its standard error. "
                    "Nothing is sampled; no model loads.")
    runs.add_argument("reports", nargs="+", metavar="REPORT",
                      help="an `o1 eval` report JSON, or a workdir (its eval/report.json)")
    runs.add_argument("--out", default=None, help="also save the combined figures as JSON")
    runs.set_defaults(func=_eval_runs)
