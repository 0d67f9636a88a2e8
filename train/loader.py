"""Grain pipelines over a dataset directory built by o1.

Every model o1 trains reads its data through `make_loader`: one split through `tfds` random
access, shuffled with a seed, this process's shard (`jax.process_index()` of
`jax.process_count()`), per-example transformations, and batches. Its iterator's state is a
small bytes object: saved with a checkpoint and restored, the iterator yields exactly the
batches an uninterrupted run would have seen.

Batches of clips (the default transformations) are dicts: numpy arrays stacked on a leading
batch axis B (`video` uint8 [B, T, H, W, 3], `audio` float32 [B, N]) and lists of B strings
(`id`, `caption`, `metadata` as JSON).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from o1.train import datasets

# Grain's worker processes read absl flags; nothing here defines any, so parsing is a no-op
# that keeps them from failing on unparsed flags.
flags.FLAGS.mark_as_parsed()


class DecodeText(grain.transforms.Map):
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


def make_loader(data: str | os.PathLike, split: str, *, batch_size: int, seed: int,
                transforms: Sequence[grain.transforms.Map | grain.transforms.RandomMap] = (
                    DecodeText(),),
                batch_fn: Callable[[Sequence[Any]], Any] = stack_examples,
                worker_count: int = 0, num_epochs: int | None = None,
                drop_remainder: bool = True, shard_index: int | None = None,
                shard_count: int | None = None) -> grain.DataLoader:
    """A grain DataLoader over `split` of the dataset at `data`, shuffled with `seed`.

    Args:
      data: a dataset directory (`o1 data build ... --out DIR`, or a workdir's `latents`).
      split: "train", "validation", ...
      batch_size: examples per batch over all processes; each process batches its share.
      seed: the shuffle seed (and the seed of every `RandomMap` in `transforms`).
      transforms: per-example transformations before batching.
      batch_fn: a list of (transformed) examples -> one batch.
      worker_count: grain worker processes (0: load in this process).
      num_epochs: passes over the data; None repeats forever.
      drop_remainder: drop a last batch smaller than the per-process batch size.
      shard_index, shard_count: this process's shard; default `jax.process_index()` of
        `jax.process_count()`.
    """
    index = jax.process_index() if shard_index is None else shard_index
    count = jax.process_count() if shard_count is None else shard_count
    if batch_size % count:
        raise ValueError(f"a batch of {batch_size} examples must divide evenly over {count} "
                         f"processes; try a batch size of "
                         f"{max(count, batch_size // count * count)}")
    source = datasets.data_source(data, split)
    shard = grain.sharding.ShardOptions(shard_index=index, shard_count=count,
                                        drop_remainder=True)
    if len(source) // count == 0:
        raise ValueError(f"split {split!r} of {data} has {len(source)} examples, fewer than "
                         f"the {count} processes reading it")
    sampler = grain.samplers.IndexSampler(
        num_records=len(source), shard_options=shard, shuffle=True, num_epochs=num_epochs,
        seed=seed)
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[*transforms,
                    grain.transforms.Batch(batch_size // count, drop_remainder=drop_remainder,
                                           batch_fn=batch_fn)],
        worker_count=worker_count,
    )
