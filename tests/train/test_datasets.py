"""Building, reading, loading and exporting datasets."""

import json
import pathlib

import numpy as np
import pytest

from o1 import media
from o1.avshapes import generator
from o1.cli import main
from o1.train import datasets, export, loader


def test_tiny_build_has_every_split_with_the_configured_geometry(tiny_dataset, tiny_config):
    d = tiny_config.data
    builder = datasets.load_builder(tiny_dataset)
    sizes = {name: s.num_examples for name, s in builder.info.splits.items()}
    assert sizes == {"train": d.num_train, "validation": d.num_val, "test": d.num_test,
                     "holdout": d.num_holdout}
    assert datasets.load_config(tiny_dataset) == tiny_config
    ex = datasets.decode(datasets.data_source(tiny_dataset, "train")[0])
    assert ex["video"].shape == (tiny_config.num_frames, d.height, d.width, 3)
    assert ex["audio"].shape == (tiny_config.num_samples,)
    clip = generator.generate(tiny_config, "train", ex["metadata"]["index"])
    np.testing.assert_array_equal(ex["video"], clip.video)
    np.testing.assert_array_equal(ex["audio"], clip.audio)
    assert ex["caption"] == clip.caption


def test_same_seed_builds_the_same_bytes(tmp_path, tiny_dataset, tiny_config):
    again = datasets.build_avshapes(tiny_config, tmp_path / "again")
    first = sorted(datasets.dataset_dir(tiny_dataset).glob("*.array_record*"))
    second = sorted(datasets.dataset_dir(again).glob("*.array_record*"))
    assert [f.name for f in first] == [f.name for f in second] and first
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_existing_output_is_kept_unless_overwrite(tmp_path, tiny_config):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(datasets.DatasetError, match="--overwrite"):
        datasets.build_avshapes(tiny_config, out)
    # --overwrite replaces a dataset, never a folder of something else.
    with pytest.raises(datasets.DatasetError, match="holds none"):
        datasets.build_avshapes(tiny_config, out, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"


def test_failed_build_leaves_nothing_behind(tmp_path, tiny_config, monkeypatch):
    real = generator.generate

    def failing(config, split, index, seed=None):
        if index == 3:
            raise RuntimeError("generator crashed")
        return real(config, split, index, seed)

    monkeypatch.setattr(generator, "generate", failing)
    with pytest.raises(RuntimeError, match="generator crashed"):
        datasets.build_avshapes(tiny_config, tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_missing_dataset_and_split_errors_say_what_to_do(tmp_path, tiny_dataset):
    with pytest.raises(datasets.DatasetError, match="o1 data build avshapes"):
        datasets.data_source(tmp_path, "train")
    with pytest.raises(datasets.DatasetError, match="no split 'nope'"):
        datasets.data_source(tiny_dataset, "nope")


# Batches of 4 of the 16 tiny train clips.
BATCHES = {"batch_size": 4, "seed": 0}


def _ids(it, n):
    return [next(it)["id"] for _ in range(n)]


def test_restored_iterator_yields_the_same_next_batches(tiny_dataset):
    make = lambda: loader.make_loader(tiny_dataset, "train", **BATCHES)  # noqa: E731
    it = iter(make())
    _ids(it, 5)  # past the end of the first epoch (16 clips, batches of 4)
    state = it.get_state()
    expected = _ids(it, 6)
    restored = iter(make())
    restored.set_state(state)
    assert _ids(restored, 6) == expected
    # A different seed sees a different order.
    other = iter(loader.make_loader(tiny_dataset, "train", **{**BATCHES, "seed": 1}))
    assert _ids(other, 4) != _ids(iter(make()), 4)


def test_batches_stack_arrays_and_list_strings(tiny_dataset, tiny_config):
    batch = next(iter(loader.make_loader(tiny_dataset, "train", **BATCHES)))
    assert batch["video"].shape == (4, tiny_config.num_frames, 32, 32, 3)
    assert batch["audio"].shape == (4, tiny_config.num_samples)
    assert len(batch["caption"]) == 4 and all(isinstance(c, str) for c in batch["caption"])


def test_process_shards_are_disjoint_and_cover_the_split(tiny_dataset, tiny_config):
    seen = []
    for index in range(2):
        shard = loader.make_loader(tiny_dataset, "train", **BATCHES, num_epochs=1,
                                   shard_index=index, shard_count=2)
        seen.append({i for batch in shard for i in batch["id"]})
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == tiny_config.data.num_train


def test_export_writes_watchable_mp4_and_metadata(tmp_path, tiny_dataset, tiny_config):
    paths = export.export(tiny_dataset, "test", 2, tmp_path)
    assert len(paths) == 2
    for mp4 in paths:
        record = json.loads(mp4.with_suffix(".json").read_text())
        assert record["caption"] and "bounces" in record["metadata"]
        clip = media.read_media(mp4)
        assert clip.frames.shape == (tiny_config.num_frames, 32, 32, 3)
        assert clip.fps == tiny_config.data.fps
        assert abs(len(clip.audio) - tiny_config.num_samples) <= 1024
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in paths] + [p.with_suffix(".json").name for p in paths])


def test_cli_builds_and_exports(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "build", "avshapes", "--out", str(out), "--config", "tiny",
                 "--num-train", "3", "--num-val", "1", "--num-test", "2", "--seed", "5"]) == 0
    assert "'train': 3" in capsys.readouterr().out
    assert main(["data", "export", "--data", str(out), "--num", "1", "--out",
                 str(tmp_path / "x")]) == 0
    assert len(list(pathlib.Path(tmp_path / "x").glob("*.mp4"))) == 1
    assert main(["data", "build", "avshapes", "--out", str(tmp_path / "y"), "--config", "tiny",
                 "data.fsp=3"]) == 2
    assert "did you mean 'data.fps'" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_iterator_with_worker_processes_restores(tiny_dataset):
    it = iter(loader.make_loader(tiny_dataset, "train", **BATCHES, worker_count=2))
    first = _ids(it, 3)
    state = it.get_state()
    expected = _ids(it, 3)
    restored = iter(loader.make_loader(tiny_dataset, "train", **BATCHES, worker_count=2))
    restored.set_state(state)
    assert _ids(restored, 3) == expected
    # Every worker batch is a full batch of distinct clips from the split.
    assert all(len(set(batch)) == 4 for batch in first + expected)
