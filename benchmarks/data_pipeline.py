"""Data pipeline speed: AV-Shapes generation, dataset build, grain loading, mp4 export.

    o1 bench data_pipeline [--config quickstart] [--clips 200]

Prints one table and appends it to BENCHMARKS.md. Figures are clips (or batches) per second
on this machine, all measured in one run so their ratios are comparable even on a shared,
noisy machine.
"""

import argparse
import tempfile
import time
from collections.abc import Sequence

from o1 import configs, media
from o1.avshapes import generator
from o1.benchmarks import report
from o1.train import datasets, loader


def _rate(n, fn):
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quickstart")
    parser.add_argument("--clips", type=int, default=200, help="train clips to build and load")
    args = report.parse(parser, argv, __file__)
    config = configs.get(args.config, [f"data.num_train={args.clips}", "data.num_val=0",
                                       "data.num_test=0", "data.num_holdout=0"])
    rows = []
    rows.append(("generate (numpy, in memory)", "clips/s", _rate(
        args.clips, lambda: [generator.generate(config, "train", i) for i in range(args.clips)])))
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/ds"
        rows.append(("build (generate + TFDS array_record)", "clips/s", _rate(
            args.clips, lambda: datasets.build_avshapes(config, out))))
        size = sum(f.stat().st_size for f in datasets.dataset_dir(out).iterdir())
        rows.append(("on disk", "kB/clip", size / args.clips / 1e3))
        for workers in (0, 2):
            batches = args.clips // 8
            it = iter(loader.make_loader(out, "train", batch_size=8, seed=0,
                                         worker_count=workers, num_epochs=1))
            next(it)  # start-up (worker processes) is not throughput
            rows.append((f"grain load, {workers} workers", "clips/s",
                         _rate((batches - 1) * 8, lambda it=it: list(it))))
        source = datasets.data_source(out, "train")
        n = min(args.clips, 50)
        rows.append(("mp4 write (H.264 + AAC)", "clips/s", _rate(n, lambda: [
            media.write_mp4(f"{tmp}/{i}.mp4", source[i]["video"], config.data.fps,
                            source[i]["audio"], config.data.sample_rate) for i in range(n)])))
        rows.append(("mp4 read", "clips/s", _rate(n, lambda: [
            media.read_media(f"{tmp}/{i}.mp4") for i in range(n)])))
    table = report.Table(["stage", "value", "unit"])
    for name, unit, value in rows:
        table.add([name, f"{value:,.1f}", unit])
    report.publish("Data pipeline", table, args, note=(
        f"`{args.config}` AV-Shapes ({config.data.width}x{config.data.height}, "
        f"{config.num_frames} frames + {config.num_samples} samples per clip), "
        f"{args.clips} train clips."))


if __name__ == "__main__":
    main()
