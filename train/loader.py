"""Grain pipelines over a dataset directory built by o1.

A loader reads one split through `tfds` random access, shuffles with a seed, keeps this
process's shard (`jax.process_index()` of `jax.process_count()`), and batches. Its iterator's
state is a small bytes object: saved with a checkpoint and restored, the iterator yields exactly
the batches an uninterrupted run would have seen.

Batches are dicts: numpy arrays stacked on a leading batch axis B (`video` uint8
[B, T, H, W, 3], `audio` float32 [B, N]) and lists of B strings (`id`, `caption`,
`metadata` as JSON).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from o1.config import LoaderConfig
from o1.train import datasets

# Grain's worker processes read absl flags; nothing here defines any, so parsing is a no-op
# that keeps them from failing on unparsed flags.
flags.FLAGS.mark_as_parsed()


class _DecodeText(grain.transforms.Map):
    """Bytes features to str; the rest passes through."""

    def map(self, example: dict[str, Any]) -> dict[str, Any]:
        out = dict(example)
        for key in ("id", "caption", "metadata"):
            if isinstance(out.get(key), bytes):
                out[key] = out[key].decode("utf-8")
        return out


def stack_examples(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacks arrays on a new leading axis and collects strings into lists."""
    batch: dict[str, Any] = {}
    for key, first in examples[0].items():
        values = [ex[key] for ex in examples]
        batch[key] = values if isinstance(first, str) else np.stack(values)
    return batch


def make_loader(data: str | os.PathLike, split: str, loader: LoaderConfig, *,
                num_epochs: int | None = None, drop_remainder: bool = True,
                shard_index: int | None = None, shard_count: int | None = None
                ) -> grain.DataLoader:
    """A grain DataLoader over `split` of the dataset at `data`.

    Args:
      data: a dataset directory (`o1 data build ... --out DIR`).
      split: "train", "validation", ...
      loader: batch size (global, divided over processes), shuffle, seed and workers.
      num_epochs: passes over the data; None repeats forever.
      drop_remainder: drop a last batch smaller than the per-process batch size.
      shard_index, shard_count: this process's shard; default `jax.process_index()` of
        `jax.process_count()`.
    """
    index = jax.process_index() if shard_index is None else shard_index
    count = jax.process_count() if shard_count is None else shard_count
    if loader.batch_size % count:
        raise ValueError(f"loader.batch_size ({loader.batch_size}) must divide evenly over "
                         f"{count} processes; try loader.batch_size="
                         f"{max(count, loader.batch_size // count * count)}")
    source = datasets.data_source(data, split)
    shard = grain.sharding.ShardOptions(shard_index=index, shard_count=count,
                                        drop_remainder=True)
    if len(source) // count == 0:
        raise ValueError(f"split {split!r} of {data} has {len(source)} examples, fewer than "
                         f"the {count} processes reading it")
    sampler = grain.samplers.IndexSampler(
        num_records=len(source), shard_options=shard, shuffle=loader.shuffle,
        num_epochs=num_epochs, seed=loader.seed)
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[
            _DecodeText(),
            grain.transforms.Batch(loader.batch_size // count, drop_remainder=drop_remainder,
                                   batch_fn=stack_examples),
        ],
        worker_count=loader.worker_count,
    )
