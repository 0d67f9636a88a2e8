"""`o1 quickstart`: from a clean checkout to a served, judged model in one command.

    o1 quickstart [--workdir runs/quickstart] [--config quickstart] [--no-serve] [key=value ...]

Stages, in order, all inside the workdir W:

    dataset      AV-Shapes clips of the config          -> W/avshapes/
    tokenizers   text tokenizer, video VAE, audio VAE   -> W/text_tokenizer.model, W/*_vae/
    latents      the latent cache                       -> W/latents/
    transformer  `o1 train`                             -> W/checkpoints/
    eval         `o1 eval` on the test split            -> W/eval/report.json
    (serve)      the studio, unless --no-serve

`W/quickstart.json` holds the config and, per finished stage, when it finished and how long
it took. A rerun with the same config skips finished stages (so a second run starts serving
at once); an interrupted stage resumes from its own checkpoints (tokenizers and transformer)
or starts over from nothing (dataset and latents are written to a temporary folder and
renamed into place when complete). A rerun with another config is refused: one workdir, one
config.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import pathlib
import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from o1.cli.config import add_config_args, named_config

if TYPE_CHECKING:
    from o1.config import Config

log = logging.getLogger(__name__)

STAGES = ("dataset", "tokenizers", "latents", "transformer", "eval")
RECORD = "quickstart.json"


@dataclasses.dataclass
class Record:
    """What `W/quickstart.json` says: the config and the finished stages."""

    path: pathlib.Path
    config: dict | None = None
    stages: dict[str, dict] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, workdir: pathlib.Path) -> Record:
        from o1.config import ConfigError

        path = workdir / RECORD
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON ({e}); delete it to re-check every "
                              "stage (finished stages skip their own work)") from None
        return cls(path, data.get("config"), data.get("stages", {}))

    def save(self) -> None:
        tmp = self.path.with_name(f".{RECORD}.tmp")
        tmp.write_text(json.dumps({"config": self.config, "stages": self.stages}, indent=2))
        os.replace(tmp, self.path)

    def finish(self, stage: str, seconds: float) -> None:
        self.stages[stage] = {"seconds": round(seconds, 1),
                              "finished": datetime.datetime.now().isoformat(timespec="seconds")}
        self.save()


def peak_memory_gb() -> float:
    """Peak resident memory of this process and its finished children, in GB."""
    kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
             resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return kb / 1e6


def run(workdir: str | os.PathLike, config: Config, eval_num: int = 50,
        say: Callable[[str], None] = print) -> dict[str, float]:
    """Runs every unfinished stage; returns the seconds of every stage (this run's, or the
    recorded ones of skipped stages).

    Raises:
      ConfigError: the workdir holds a quickstart of another config.
      loop.Preempted: SIGTERM/SIGINT during a tokenizer or transformer stage (it saved).
    """
    from o1 import config as config_lib
    from o1.config import Config, ConfigError
    from o1.eval import evaluate
    from o1.train import datasets, trainer
    from o1.train.loop import StopRequest

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    record = Record.load(workdir)
    if record.config is not None:
        # what a request may ask (`sample`) does not change what the stages build
        every = [f.name for f in dataclasses.fields(Config) if f.name != "sample"]
        wrong = config_lib.differences(config_lib.from_dict(record.config), config, every)
        if wrong:
            raise ConfigError(f"{workdir} holds a quickstart of another config "
                              f"({'; '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}); "
                              "rerun with the same config or use a new --workdir")
    record.config = json.loads(config.to_json())
    record.save()
    data = workdir / "avshapes"

    def build_dataset() -> None:
        if data.exists():  # complete: builds are renamed into place at the end
            wrong = config_lib.differences(datasets.load_config(data), config,
                                           ("seed", "data"))
            if wrong:
                raise ConfigError(f"{data} holds another AV-Shapes build ({'; '.join(wrong)});"
                                  " delete it or use a new --workdir")
            return
        datasets.build_avshapes(config, data)

    def train_tokenizers() -> None:
        from o1.train import tokenizers as tok_train
        tok_train.train_tokenizers(workdir, data, config)

    def encode_latents() -> None:
        from o1.train import latents
        if not (workdir / "latents").exists():  # complete: renamed into place at the end
            latents.encode_dataset(workdir, data)

    def train_transformer() -> None:
        with StopRequest() as stop:
            trainer.train(workdir, config, stop)

    def judge() -> None:
        # A model of several languages is judged from prompts and captions in each.
        languages = config.text.languages if len(config.text.languages) > 1 else ()
        report = evaluate.evaluate(workdir, "test", eval_num, languages=languages)
        say(evaluate.format_report(report))

    work = dict(zip(STAGES, (build_dataset, train_tokenizers, encode_latents,
                             train_transformer, judge), strict=True))
    seconds = {}
    for i, stage in enumerate(STAGES, 1):
        if stage in record.stages:
            seconds[stage] = record.stages[stage]["seconds"]
            say(f"[{i}/{len(STAGES)}] {stage}: done ({seconds[stage]:.0f} s, "
                f"{record.stages[stage]['finished']}), skipped")
            report = workdir / "eval" / "report.json"
            if stage == "eval" and report.exists():  # the table the finished stage printed
                say(evaluate.format_report(json.loads(report.read_text())))
            continue
        say(f"[{i}/{len(STAGES)}] {stage} ...")
        start = time.perf_counter()
        work[stage]()
        seconds[stage] = time.perf_counter() - start
        record.finish(stage, seconds[stage])
        say(f"[{i}/{len(STAGES)}] {stage}: done in {seconds[stage]:.1f} s")
    return seconds


def summary(seconds: dict[str, float]) -> str:
    """The stage times as a small table, with the total and the peak memory."""
    lines = [f"  {stage:<12} {seconds[stage]:8.1f} s" for stage in STAGES if stage in seconds]
    total = sum(seconds.values())
    lines.append(f"  {'total':<12} {total:8.1f} s ({total / 60:.1f} min)")
    lines.append(f"  peak memory {peak_memory_gb():.2f} GB (resident, this process)")
    return "quickstart stages:\n" + "\n".join(lines)


def _quickstart(args: argparse.Namespace) -> None:
    from o1.serve import server, studio

    config = named_config(args)
    options = studio.StudioOptions(host=args.host, port=args.port)
    if not args.no_serve:
        server.check_port(options.host, options.port)  # before half an hour of work
    seconds = run(args.workdir, config, args.eval_num)
    print(summary(seconds), flush=True)
    if not args.no_serve:
        server.run(args.workdir, options)


def add_commands(commands: argparse._SubParsersAction) -> None:
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
    add_config_args(qs)
    qs.set_defaults(func=_quickstart)
