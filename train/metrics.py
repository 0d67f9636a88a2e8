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
    holds every stage of a run and survives restarts.

    A run killed after logging steps its last checkpoint does not hold takes those steps again
    when it resumes. So a writer opened at `start` (the step the run resumes from, 0 for a fresh
    one) first drops this stage's rows past `start` from `metrics.jsonl` (rewritten atomically)
    and has TensorBoard purge its events past `start`: every step is logged once.
    """

    def __init__(self, workdir: str | os.PathLike, stage: str, start: int | None = None):
        self._dir = pathlib.Path(workdir)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._stage = stage
        if start is not None:
            self._drop_after(start)
        self._tb = SummaryWriter(str(self._dir / "tb"), flush_secs=10,
                                 purge_step=None if start is None else start + 1)

    def _drop_after(self, start: int) -> None:
        path = self._dir / "metrics.jsonl"
        if not path.exists():
            return
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not self._stale(line, start)]
        if len(kept) < len(lines):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text("".join(kept), encoding="utf-8")
            os.replace(tmp, path)

    def _stale(self, line: str, start: int) -> bool:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: not a row of any step
            return True
        return row.get("stage") == self._stage and row.get("step", 0) > start

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
