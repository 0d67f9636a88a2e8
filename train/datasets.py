"""TFDS datasets of clips: AV-Shapes and a user's media folder, stored as array_record.

Both builders write the same features, as plain tensors and text so no TensorFlow is needed:

  id        text     unique clip name
  video     uint8    [T, H, W, 3] (zlib-compressed on disk)
  audio     float32  [N], mono, N = T * sample_rate / fps
  caption   text
  metadata  text     JSON: geometry, and for AV-Shapes objects, positions and bounce events

A dataset directory holds one dataset (`DIR/<name>/<version>/`); the o1 config that built it
is kept in its `DatasetInfo` metadata so readers can check geometry. Builds go to a temporary
sibling directory that is renamed onto `DIR` only when complete, so a failed or interrupted
build never leaves a partial dataset where a reader would find it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from o1 import config as config_lib
from o1.avshapes import generator
from o1.config import Config


class DatasetError(ValueError):
    """A dataset directory that cannot be read or written; the message says why."""


def features(config: Config) -> tfds.features.FeaturesDict:
    d = config.data
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "video": tfds.features.Tensor(
            shape=(config.num_frames, d.height, d.width, 3), dtype=np.uint8,
            encoding=tfds.features.Encoding.ZLIB),
        "audio": tfds.features.Tensor(shape=(config.num_samples,), dtype=np.float32),
        "caption": tfds.features.Text(),
        "metadata": tfds.features.Text(),
    })


class _ClipBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared plumbing: the o1 config travels in the dataset's metadata."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, o1_config: Config, **kwargs):
        self._o1_config = o1_config
        super().__init__(file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=features(self._o1_config),
            metadata=tfds.core.MetadataDict(o1_config=json.loads(self._o1_config.to_json())),
        )


class Avshapes(_ClipBuilder):
    """AV-Shapes: coloured shapes bouncing in a box, a tone at every wall bounce."""

    def _split_generators(self, dl_manager):
        d = self._o1_config.data
        sizes = {"train": d.num_train, "validation": d.num_val, "test": d.num_test}
        if d.holdout:
            sizes["holdout"] = d.num_holdout
        return {split: self._generate_examples(split, n) for split, n in sizes.items() if n}

    def _generate_examples(self, split: str, num: int):
        for index in range(num):
            clip = generator.generate(self._o1_config, split, index)
            yield clip.metadata["id"], {
                "id": clip.metadata["id"], "video": clip.video, "audio": clip.audio,
                "caption": clip.caption, "metadata": json.dumps(clip.metadata),
            }


class MediaFolder(_ClipBuilder):
    """Clips cut from a user's own videos with sound, with their captions."""

    def __init__(self, *, splits: Callable[[], dict[str, Iterator[tuple[str, dict]]]],
                 **kwargs):
        self._splits = splits
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        # TFDS drains the generators one after another in this order (o1.train.folder relies
        # on it: its splits take files from one shared queue).
        return self._splits()

    def _generate_examples(self, *args):  # the split generator above is the examples' source
        raise NotImplementedError


def check_out(out: str | os.PathLike, overwrite: bool) -> None:
    """DatasetError unless a dataset may be written to `out`: a new or empty directory, or,
    with `overwrite`, one that holds a dataset (never any other folder's files)."""
    out = pathlib.Path(out)
    if not (out.exists() and any(out.iterdir())):
        return
    if not overwrite:
        raise DatasetError(f"{out} already exists and is not empty; pass --overwrite to "
                           "replace it or choose another --out")
    if not (out / "dataset_info.json").exists() and not any(out.glob("*/*/dataset_info.json")):
        raise DatasetError(f"--overwrite replaces a dataset, and {out} holds none; choose "
                           "another --out")


def build(builder_factory: Callable[[str], tfds.core.DatasetBuilder], out: str | os.PathLike,
          overwrite: bool = False,
          finish: Callable[[pathlib.Path], Any] | None = None) -> pathlib.Path:
    """Builds a dataset into `out`, atomically.

    Args:
      builder_factory: called with a temporary data_dir; returns the builder to prepare there.
      out: the final dataset directory.
      overwrite: replace an existing dataset at `out`.
      finish: called with the temporary directory once the dataset is prepared, to add files
        (a build report) that appear at `out` together with it.
    """
    out = pathlib.Path(out).resolve()
    check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the dataset should read like any directory
    try:
        builder = builder_factory(str(tmp))
        # TFDS prints "downloaded and prepared to <the temporary dir>" on stdout, which
        # would point users at a path that is about to move; its progress bars go to stderr.
        with contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        shutil.rmtree(tmp / "downloads", ignore_errors=True)
        if finish is not None:
            finish(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def build_avshapes(config: Config, out: str | os.PathLike, overwrite: bool = False
                   ) -> pathlib.Path:
    generator.check_languages(config)
    return build(lambda d: Avshapes(o1_config=config, data_dir=d), out, overwrite)


def dataset_dir(data: str | os.PathLike) -> pathlib.Path:
    """The `<name>/<version>` directory inside a dataset directory built by o1."""
    root = pathlib.Path(data)
    if (root / "dataset_info.json").exists():
        return root
    found = sorted(root.glob("*/*/dataset_info.json"))
    if not found:
        raise DatasetError(f"no dataset found in {root}; build one with "
                           f"`o1 data build avshapes --out {root}`")
    if len(found) > 1:
        raise DatasetError(f"{root} holds several datasets ({[str(f.parent) for f in found]}); "
                           "pass one of them as --data")
    return found[0].parent


def load_builder(data: str | os.PathLike) -> tfds.core.DatasetBuilder:
    return tfds.builder_from_directory(str(dataset_dir(data)))


def load_config(data: str | os.PathLike) -> Config:
    """The o1 config a dataset was built with."""
    metadata = load_builder(data).info.metadata or {}
    if "o1_config" not in metadata:
        raise DatasetError(f"{data} was not built by o1 (no o1_config in its metadata)")
    return config_lib.from_dict(metadata["o1_config"])


def data_source(data: str | os.PathLike, split: str):
    """Random access to one split: `source[i]` is a dict of numpy arrays and bytes."""
    builder = load_builder(data)
    if split not in builder.info.splits:
        raise DatasetError(f"{data} has no split {split!r}; it has "
                           f"{sorted(builder.info.splits.keys())}")
    return builder.as_data_source(split=split)


def split_bytes(data: str | os.PathLike, split: str) -> int:
    """Bytes of the files that store one split."""
    return int(load_builder(data).info.splits[split].num_bytes)


def _metadata(record: dict[str, Any]) -> dict[str, Any]:
    metadata = record["metadata"]
    return json.loads(metadata) if isinstance(metadata, (bytes, str)) else metadata


def caption_language(record: dict[str, Any], config: Config) -> str:
    """The language of a record's caption: as its metadata records it, else the first of
    `text.languages` (a dataset built before captions had languages, or a folder)."""
    metadata = _metadata(record)
    language = metadata.get("language", config.text.languages[0])
    if language not in config.text.languages:
        raise DatasetError(f"clip {metadata.get('id', '?')!r} has a caption in {language!r}, "
                           f"which text.languages {list(config.text.languages)} does not "
                           f"name; add it there")
    return language


def every_caption(record: dict[str, Any], config: Config) -> list[tuple[str, str]]:
    """(language, caption) pairs of a record: its caption in each of `text.languages`, in
    that order, when its metadata holds them (AV-Shapes with `data.every_language`), else its
    one caption in its language."""
    captions = _metadata(record).get("captions", {})
    if len(config.text.languages) > 1 and all(lang in captions
                                              for lang in config.text.languages):
        return [(lang, captions[lang]) for lang in config.text.languages]
    caption = record["caption"]
    return [(caption_language(record, config),
             caption.decode() if isinstance(caption, bytes) else caption)]


def decode(example: dict[str, Any]) -> dict[str, Any]:
    """Text features arrive as bytes; turn them into str and the metadata into a dict."""
    out = dict(example)
    for key in ("id", "caption", "metadata"):
        with contextlib.suppress(AttributeError):
            out[key] = out[key].decode("utf-8")
    out["metadata"] = json.loads(out["metadata"])
    return out
