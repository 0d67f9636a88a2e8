"""Grain pipelines over a dataset directory built by o1.

Every model o1 trains reads its data through `make_loader`. The examples of one split form a
stream: epoch e lists every record once, in a permutation drawn from the seed and e; each
example then goes through the transformations, a `RandomMap` drawing from a Philox generator
keyed by the seed and the transformation and counted from the example's position in the
stream. Process p of n (`jax.process_index()` of `jax.process_count()`) reads positions p,
p + n, p + 2n, ... and batches them in that order. A batch is built whole: its records are
looked up in the epochs' permutations, read together and transformed one by one, with no
per-example pipeline layers in between. Worker processes, when there are any
(`worker_count`), each build whole batches (worker w of W builds batches w, w + W, ...), and
the batches are read back in order. So:

- the batches a process sees depend on the split, the seed, the transformations, the batch
  size and its shard, never on the number of worker processes;
- batch i of every process together hold stream positions [i * batch_size, (i + 1) *
  batch_size) of the split, whatever the number of processes, and an example's draws depend
  only on its position.

An iterator's state is the number of examples its process has read (a small JSON object).
Saved with a checkpoint and set on an iterator of a loader built the same way, with any
worker count, it yields exactly the batches an uninterrupted run would have seen; with
another batch size it goes on from the same example.

Batches of clips (the default transformations) are dicts: numpy arrays stacked on a leading
batch axis B (`video` uint8 [B, T, H, W, 3], `audio` float32 [B, N]) and lists of B strings
(`id`, `caption`, `metadata` as JSON).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np
from absl import flags
from tqdm import tqdm

from o1.train import datasets

log = logging.getLogger(__name__)

# Batches each process computes ahead of the one it hands out, in a background thread (in
# every worker process, when there are workers): loading overlaps the training step.
_PREFETCH = grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)


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


def _absl_flag_defaults() -> None:
    """Lets grain read its absl flags at their defaults in this process.

    Starting worker processes, grain reads `--grain_enable_multiprocess_worker_profiling`;
    o1's command line is argparse, so nothing parses absl flags and the read would raise
    `UnparsedFlagAccessError`. The workers themselves (spawned afresh) need nothing: grain
    marks the flags it reads there as present.
    """
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class Loader:
    """This process's batches of one split; iterating starts from the first batch.

    `make_loader` builds it; each iterator (`BatchIterator`) has its own position.
    """

    def __init__(self, stream: Stream, *, shard_index: int, shard_count: int,
                 batch_size: int, batch_fn: Callable[[Sequence[Any]], Any],
                 drop_remainder: bool, worker_count: int, about: dict[str, Any]):
        self.stream = stream
        self.shard_index, self.shard_count = shard_index, shard_count
        self.batch_size = batch_size  # examples per batch of this process
        self.batch_fn = batch_fn
        self.drop_remainder = drop_remainder
        self.worker_count = worker_count
        self.about = about  # saved in states: a restore with other values warns

    def batches(self, start: int) -> grain.IterDataset:
        """The batches of this process's examples from example `start` on."""
        ds = _Batches(self, start).to_iter_dataset(_PREFETCH)
        if self.worker_count:
            # Workers slice the batches (not the examples): the order stays the same.
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.worker_count))
        return ds

    def __iter__(self) -> BatchIterator:
        return BatchIterator(self)

    def iterate(self, place: Callable[[Any], Any], ahead: int = 2) -> BatchIterator:
        """An iterator of `place(batch)` for each batch, computed `ahead` batches in advance
        by a background thread: `place` puts a batch on the devices while the step before it
        runs, so the step never waits for its input."""
        return BatchIterator(self, place, ahead)


class _Batches(grain.MapDataset):
    """Batch i of a loader's process, counted from example `start` of its share."""

    def __init__(self, loader: Loader, start: int):
        super().__init__()
        self.loader, self.start = loader, start
        stream, count = loader.stream, loader.shard_count
        # Examples of this process's share from `start` on.
        self.examples = (sys.maxsize if stream.length is None
                         else max(stream.length // count - start, 0))

    def __len__(self) -> int:
        n, b = self.examples, self.loader.batch_size
        return n // b if self.loader.drop_remainder or n == sys.maxsize else -(-n // b)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        ld = self.loader
        first = self.start + index * ld.batch_size
        local = np.arange(first, min(first + ld.batch_size, self.start + self.examples))
        return ld.batch_fn(ld.stream.examples(ld.shard_index + ld.shard_count * local))

    def __str__(self) -> str:
        return f"batches of {self.loader.stream}"


class BatchIterator(Iterator[Any]):
    """Batches of a `Loader`, with a state to save in a checkpoint and restore.

    Orbax saves and restores it through `grain.checkpoint.CheckpointSave/Restore` (one JSON
    file per process). Worker processes start at the first batch (or `start_prefetch`);
    `close` stops them. With `place`, a thread reads and places up to `ahead` batches in
    advance; the state still counts only the batches handed out.
    """

    def __init__(self, loader: Loader, place: Callable[[Any], Any] | None = None,
                 ahead: int = 0):
        self._loader = loader
        self._read = 0  # examples of this process's stream before the next batch
        self._it: grain.DatasetIterator | None = None
        self._place = place
        self._ahead = ahead
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _start(self) -> grain.DatasetIterator:
        if self._it is None:
            if self._loader.worker_count:
                _absl_flag_defaults()
            self._it = iter(self._loader.batches(self._read))
        return self._it

    def __next__(self) -> Any:
        if self._place is None:
            batch = next(self._start())
        else:
            if self._thread is None:
                self._start_thread()
            ok, batch = self._queue.get()
            if not ok:  # the thread's exception, raised here
                self._thread.join()
                self._thread = None
                raise batch
        self._read += self._loader.batch_size
        return batch

    def _start_thread(self) -> None:
        it = self._start()
        self._queue = queue.Queue(max(self._ahead, 1))
        self._stop.clear()

        def fill(q: queue.Queue, stop: threading.Event):
            try:
                while not stop.is_set():
                    item = (True, self._place(next(it)))
                    while not stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            pass
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                q.put((False, e))

        self._thread = threading.Thread(target=fill, args=(self._queue, self._stop),
                                        name="o1-batches", daemon=True)
        self._thread.start()

    def start_prefetch(self) -> None:
        """Starts loading (and the worker processes) before the first `next`."""
        self._start().start_prefetch()

    def close(self) -> None:
        """Stops the worker processes and the placing thread; the next `next` starts them
        again from the first batch not handed out."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._queue = None
        if self._it is not None:
            self._it.close()
            self._it = None

    def get_state(self) -> bytes:
        return json.dumps({"examples_read": self._read, **self._loader.about},
                          indent=1).encode()

    def set_state(self, state: bytes) -> None:
        """Continues after the examples read in `state` (from `get_state`, or the state of
        the grain DataLoader that o1 used before)."""
        saved = json.loads(state)
        if "last_seen_indices" in saved:
            read = _read_by_data_loader(saved, self._loader.about)
            log.warning("data iterator: state of an earlier o1 (grain DataLoader); going on "
                        "after its %d examples, in the order this version reads them", read)
        else:
            read = saved["examples_read"]
            changed = [f"{key} {saved[key]!r} -> {now!r}"
                       for key, now in self._loader.about.items()
                       if key in saved and saved[key] != now]
            if changed:
                log.warning("data iterator restored with a different %s: the batches from "
                            "here on are not those of an uninterrupted run",
                            ", ".join(changed))
        self.close()
        self._read = read


def _read_by_data_loader(state: dict[str, Any], about: dict[str, Any]) -> int:
    """Examples a process had read by a grain DataLoader state (format version 2): each of
    its W workers (W = 0: the process itself) read every W-th example of the process's
    shard, and `last_seen_indices` holds the global position of each one's last example."""
    last = {int(k): v for k, v in state["last_seen_indices"].items()}
    index, count = about["shard_index"], about["shard_count"]
    workers = max(state["worker_count"], 1)
    stride = workers * count
    return sum((seen + stride - index - w * count) // stride for w, seen in last.items())


class MemorySource:
    """Every record of a data source read and decoded once (and `prepare`d, when given), kept
    in this process's memory, so that batches skip the per-record read and decode."""

    def __init__(self, source, prepare: Callable[[dict], dict] | None, desc: str = "records"):
        chunk = 256
        self.desc = desc
        self.records: list[dict[str, Any]] = []
        with tqdm(total=len(source), desc=f"reading {desc} into memory", unit="record",
                  leave=False, disable=len(source) < 10 * chunk) as bar:
            for first in range(0, len(source), chunk):
                records = _read(source, range(first, min(first + chunk, len(source))))
                self.records += records if prepare is None else [prepare(r) for r in records]
                bar.update(len(records))

    def __len__(self) -> int:
        return len(self.records)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [self.records[i] for i in indices]

    def __str__(self) -> str:
        return f"{self.desc} ({len(self.records)} records in memory)"


def _read(source, indices: Sequence[int]) -> list[dict[str, Any]]:
    indices = [int(i) for i in indices]
    if hasattr(source, "__getitems__"):
        return list(source.__getitems__(indices))
    return [source[i] for i in indices]


class Stream:
    """A split's examples in stream order: epoch after epoch of shuffled records, each
    record `prepare`d and transformed, every draw keyed by the example's position.

    Args:
      source: random access to the records (`len`, `source[i]` or `__getitems__`).
      seed: the shuffle's and the random transformations' seed.
      transforms: per-example `grain.transforms.Map`s and `RandomMap`s, in order.
      num_epochs: passes over the records; None repeats forever.
      prepare: a per-record function applied as records are read (a `MemorySource` has
        applied it already: `prepared=True`).
    """

    # Epoch orders kept per process: a batch spans at most two epochs.
    _CACHED_EPOCHS = 2

    def __init__(self, source, *, seed: int, transforms: Sequence[Any],
                 num_epochs: int | None, prepare: Callable[[dict], dict] | None = None,
                 prepared: bool = False):
        self.source = source
        self.records = len(source)
        self.seed = seed
        self.transforms = list(transforms)
        self.length = None if num_epochs is None else self.records * num_epochs
        self.prepare = None if prepared else prepare
        self._orders: dict[int, np.ndarray] = {}
        self._generators: dict[int, tuple[np.random.Generator, np.ndarray]] = {}

    def order(self, epoch: int) -> np.ndarray:
        """The records of epoch `epoch`, in stream order (a permutation of the split)."""
        if epoch not in self._orders:
            if len(self._orders) >= self._CACHED_EPOCHS:
                del self._orders[min(self._orders)]
            self._orders[epoch] = np.random.default_rng(
                [self.seed, 0, epoch]).permutation(self.records)
        return self._orders[epoch]

    def generator(self, transform: int, position: int) -> np.random.Generator:
        """The generator the random transformation `transform` draws from for the example
        at `position`: Philox keyed by (seed, transform), counted from the position."""
        if transform not in self._generators:
            key = np.random.SeedSequence([self.seed, 1, transform]).generate_state(
                2, np.uint64)
            self._generators[transform] = (np.random.Generator(np.random.Philox(key=key)),
                                           key)
        rng, key = self._generators[transform]
        rng.bit_generator.state = {
            "bit_generator": "Philox",
            "state": {"counter": np.array([0, 0, 0, position], np.uint64), "key": key},
            "buffer": np.zeros(4, np.uint64), "buffer_pos": 4, "has_uint32": 0,
            "uinteger": 0}
        return rng

    def examples(self, positions: np.ndarray) -> list[Any]:
        """The transformed examples at stream `positions`."""
        epochs, at = np.divmod(positions, self.records)
        ids = np.empty(len(positions), np.int64)
        for epoch in np.unique(epochs):
            mine = epochs == epoch
            ids[mine] = self.order(int(epoch))[at[mine]]
        out = _read(self.source, ids)
        if self.prepare is not None:
            out = [self.prepare(r) for r in out]
        for t, transform in enumerate(self.transforms):
            if isinstance(transform, grain.transforms.RandomMap):
                out = [transform.random_map(x, self.generator(t, int(p)))
                       for x, p in zip(out, positions, strict=True)]
            else:
                out = [transform.map(x) for x in out]
        return out

    def __str__(self) -> str:
        return str(self.source)


def make_loader(data: str | os.PathLike, split: str, *, batch_size: int, seed: int,
                transforms: Sequence[grain.transforms.Map | grain.transforms.RandomMap] = (
                    DecodeText(),),
                batch_fn: Callable[[Sequence[Any]], Any] = stack_examples,
                worker_count: int = 0, num_epochs: int | None = None,
                drop_remainder: bool = True, shard_index: int | None = None,
                shard_count: int | None = None,
                prepare: Callable[[dict[str, Any]], Any] | None = None,
                memory_mb: float = 0) -> Loader:
    """This process's batches of `split` of the dataset at `data`, shuffled with `seed`.

    Args:
      data: a dataset directory (`o1 data build ... --out DIR`, or a workdir's `latents`).
      split: "train", "validation", ...
      batch_size: examples per batch over all processes; each process batches its share.
      seed: the shuffle seed (and the seed the `RandomMap`s in `transforms` draw from).
      transforms: per-example transformations before batching.
      batch_fn: a list of (transformed) examples -> one batch.
      worker_count: worker processes that build batches (0: build them in this process);
        the batches are the same for any count.
      num_epochs: passes over the data; None repeats forever. Every process gets the same
        number of examples: up to `shard_count - 1` examples of the last pass are left out.
      drop_remainder: drop a last batch smaller than the per-process batch size.
      shard_index, shard_count: this process's shard; default `jax.process_index()` of
        `jax.process_count()`.
      prepare: a function of one record, applied as it is read, before `transforms` (for
        a split held in memory, once per record as it is loaded): what a batch needs of a
        record, computed once.
      memory_mb: when the split's files take at most this many MB, its records are read
        once (and prepared) and kept in memory (`MemorySource`); the batches are the same.
    """
    index = jax.process_index() if shard_index is None else shard_index
    count = jax.process_count() if shard_count is None else shard_count
    if batch_size % count:
        raise ValueError(f"a batch of {batch_size} examples must divide evenly over {count} "
                         f"processes; try a batch size of "
                         f"{max(count, batch_size // count * count)}")
    source = datasets.data_source(data, split)
    in_memory = memory_mb > 0 and datasets.split_bytes(data, split) <= memory_mb * 2**20
    if in_memory:
        source = MemorySource(source, prepare, f"{split} of {data}")
    if len(source) // count == 0:
        raise ValueError(f"split {split!r} of {data} has {len(source)} examples, fewer than "
                         f"the {count} processes reading it")
    stream = Stream(source, seed=seed, transforms=transforms, num_epochs=num_epochs,
                    prepare=prepare, prepared=in_memory)
    return Loader(stream, shard_index=index, shard_count=count, batch_size=batch_size // count,
                  batch_fn=batch_fn, drop_remainder=drop_remainder, worker_count=worker_count,
                  about={"split": split, "records": len(source), "seed": seed,
                         "shard_index": index, "shard_count": count})
