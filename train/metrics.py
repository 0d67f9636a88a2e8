"""Metrics to TensorBoard event files (no TensorFlow) and to `metrics.jsonl` in a workdir."""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from collections.abc import Mapping

from tensorboardX import SummaryWriter


class MetricWriter:
    """Writes scalars under `<workdir>/tb/` and appends the same numbers to `metrics.jsonl`.

    Each JSON line is `{"stage": ..., "step": ..., "time": ..., name: value, ...}`, so one file
    holds every stage of a run and survives restarts (lines are only ever appended).
    """

    def __init__(self, workdir: str | os.PathLike, stage: str):
        self._dir = pathlib.Path(workdir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._stage = stage
        self._tb = SummaryWriter(str(self._dir / "tb"), flush_secs=10)

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        values = {k: float(v) for k, v in scalars.items()}
        for name, value in values.items():
            if math.isfinite(value):
                self._tb.add_scalar(f"{self._stage}/{name}", value, step)
        line = {"stage": self._stage, "step": int(step), "time": round(time.time(), 3), **values}
        with open(self._dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def close(self) -> None:
        self._tb.close()
