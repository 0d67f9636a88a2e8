"""Export dataset clips as files a person can watch and other tools can check."""

from __future__ import annotations

import json
import os
import pathlib

from tqdm import tqdm

from o1 import media
from o1.train import datasets


def default_split(data: str | os.PathLike) -> str:
    """The split to show when none is named: test, else validation, else train (a folder
    dataset of few videos may lack test, or both)."""
    splits = datasets.load_builder(data).info.splits
    return next((s for s in ("test", "validation", "train") if s in splits), "test")


def export(data: str | os.PathLike, split: str, num: int, out: str | os.PathLike
           ) -> list[pathlib.Path]:
    """Writes the first `num` clips of `split` as `ID.mp4` (H.264 + AAC) and `ID.json`.

    The JSON holds the caption and the clip's metadata (for AV-Shapes: objects, per-frame
    positions, bounce events). Returns the mp4 paths.
    """
    if num <= 0:
        raise datasets.DatasetError(f"--num must be positive, got {num}")
    config = datasets.load_config(data)
    source = datasets.data_source(data, split)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in tqdm(range(min(num, len(source))), desc=f"export {split}", unit="clip"):
        ex = datasets.decode(source[i])
        mp4 = media.write_mp4(out / f"{ex['id']}.mp4", ex["video"], config.data.fps,
                              ex["audio"], config.data.sample_rate)
        record = {"id": ex["id"], "caption": ex["caption"], "metadata": ex["metadata"]}
        tmp = out / f".{ex['id']}.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, out / f"{ex['id']}.json")
        paths.append(mp4)
    return paths
