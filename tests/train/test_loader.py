"""The loader's guarantees: the same batches for any worker count and any number of processes,
and iterator states that resume exactly, also with another worker count."""

import json
import time

import grain
import numpy as np
import pytest

from o1.train import datasets, loader

# Batches of 4 of the 16 tiny train clips.
BATCHES = {"batch_size": 4, "seed": 0}


def _take(it, n: int) -> list[dict]:
    return [next(it) for _ in range(n)]


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert [x["id"] for x in a] == [x["id"] for x in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["video"], y["video"])


def test_batches_and_resumes_do_not_depend_on_the_worker_count(tiny_dataset):
    def make(workers):
        return iter(loader.make_loader(tiny_dataset, "train", **BATCHES, worker_count=workers))

    expected = _take(make(0), 8)  # two epochs
    with_workers = make(2)
    try:
        _assert_same(_take(with_workers, 3), expected[:3])
        # Saved with 2 workers, resumed without.
        without = make(0)
        without.set_state(with_workers.get_state())
        _assert_same(_take(without, 3), expected[3:6])
        # Saved without workers, resumed with 2 (they start again at that batch).
        with_workers.set_state(without.get_state())
        _assert_same(_take(with_workers, 2), expected[6:8])
    finally:
        with_workers.close()


def test_a_global_batch_holds_the_same_examples_for_any_process_count(tiny_dataset):
    one = _take(iter(loader.make_loader(tiny_dataset, "train", **BATCHES)), 6)
    two = [_take(iter(loader.make_loader(tiny_dataset, "train", **BATCHES, shard_index=i,
                                         shard_count=2)), 6) for i in range(2)]
    for batch, half_0, half_1 in zip(one, *two, strict=True):
        assert len(half_0["id"]) == len(half_1["id"]) == 2
        assert sorted(batch["id"]) == sorted(half_0["id"] + half_1["id"])


def test_state_of_the_earlier_grain_data_loader_resumes_after_its_examples(tiny_dataset):
    # The grain DataLoader o1 used before, as process 1 of 2 (2 examples a batch).
    source = datasets.data_source(tiny_dataset, "train")
    shard = grain.sharding.ShardOptions(shard_index=1, shard_count=2, drop_remainder=True)
    old = iter(grain.DataLoader(
        data_source=source, operations=[grain.transforms.Batch(2)],
        sampler=grain.samplers.IndexSampler(num_records=len(source), shard_options=shard,
                                            shuffle=True, seed=0)))
    _take(old, 3)
    it = iter(loader.make_loader(tiny_dataset, "train", **BATCHES, shard_index=1,
                                 shard_count=2))
    it.set_state(old.get_state())
    assert json.loads(it.get_state())["examples_read"] == 6
    assert len(next(it)["id"]) == 2


def test_placed_batches_come_ahead_in_order_and_the_state_counts_only_those_handed_out(
        tiny_dataset):
    expected = _take(iter(loader.make_loader(tiny_dataset, "train", **BATCHES)), 6)
    placed = []
    it = loader.make_loader(tiny_dataset, "train", **BATCHES).iterate(
        lambda batch: placed.append(batch["id"]) or batch, ahead=2)
    try:
        _assert_same(_take(it, 2), expected[:2])
        deadline = time.monotonic() + 30
        while len(placed) < 4 and time.monotonic() < deadline:  # the thread runs ahead
            time.sleep(0.01)
        assert len(placed) >= 4  # two handed out, at least two more placed ahead
        state = it.get_state()
        assert json.loads(state)["examples_read"] == 2 * BATCHES["batch_size"]
        other = loader.make_loader(tiny_dataset, "train", **BATCHES).iterate(lambda b: b)
        other.set_state(state)
        _assert_same(_take(other, 4), expected[2:])
        other.close()
        _assert_same(_take(it, 1), expected[2:3])
    finally:
        it.close()


def test_an_error_while_placing_reaches_the_consumer(tiny_dataset):
    def place(batch):
        raise RuntimeError("device gone")

    it = loader.make_loader(tiny_dataset, "train", **BATCHES).iterate(place)
    try:
        with pytest.raises(RuntimeError, match="device gone"):
            next(it)
    finally:
        it.close()


def _id_and_video(record: dict) -> dict:
    return {"id": record["id"], "video": record["video"]}


def test_a_split_held_in_memory_gives_the_same_batches(tiny_dataset):
    def make(memory_mb, workers=0):
        return loader.make_loader(tiny_dataset, "train", **BATCHES, worker_count=workers,
                                  prepare=_id_and_video, memory_mb=memory_mb)

    assert not isinstance(make(0).stream.source, loader.MemorySource)
    from_disk = _take(iter(make(0)), 5)
    in_memory_loader = make(10_000, workers=1)
    assert isinstance(in_memory_loader.stream.source, loader.MemorySource)
    it = iter(in_memory_loader)
    try:
        in_memory = _take(it, 5)
    finally:
        it.close()
    _assert_same(in_memory, from_disk)
    assert set(in_memory[0]) == set(from_disk[0]) == {"id", "video"}  # prepared either way


class _Draw(grain.transforms.RandomMap):
    def random_map(self, example, rng):
        return {"id": example["id"], "draw": rng.random()}


def _draws(batches) -> list[tuple[str, float]]:
    return [pair for b in batches for pair in zip(b["id"], b["draw"], strict=True)]


def test_every_epoch_is_a_new_permutation_and_draws_follow_the_position(tiny_dataset):
    def make(batch_size, seed=0, **kw):
        return loader.make_loader(tiny_dataset, "train", batch_size=batch_size, seed=seed,
                                  transforms=[_Draw()], **kw)

    records = len(datasets.data_source(tiny_dataset, "train"))
    stream = _draws(_take(iter(make(4)), 3 * records // 4))  # three epochs
    epochs = [[i for i, _ in stream[e * records:(e + 1) * records]] for e in range(3)]
    for ids in epochs:
        assert len(set(ids)) == records  # each record once an epoch
    assert epochs[0] != epochs[1] != epochs[2]
    # A position's draw: the same with another batch size or shard split, new every epoch.
    assert _draws(_take(iter(make(2)), 3 * records // 2)) == stream
    halves = [_draws(_take(iter(make(4, shard_index=i, shard_count=2)), records // 2))
              for i in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted(stream[:2 * records])
    draws = [d for _, d in stream]
    assert len(set(draws)) == len(draws)
    assert _draws(_take(iter(make(4, seed=1)), 2)) != stream[:8]
