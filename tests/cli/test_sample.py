"""The sampling commands refuse inputs they cannot use from the file's header alone, before a
workdir is read or a model loads."""

import numpy as np
import pytest
from PIL import Image

from o1.cli import main


@pytest.mark.parametrize("command", [
    ["caption"], ["dub", "--out", "dubbed.mp4"], ["extend", "--seconds", "1", "--out", "x.mp4"]])
def test_an_image_is_refused_where_a_video_is_read(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "still.png")
    # The workdir does not exist: the image is refused before anything reads it.
    code = main([command[0], "--workdir", str(tmp_path / "no-run"), *command[1:], "still.png"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("o1: error: still.png is an image, not a video") and "animate" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "dubbed.mp4").exists() and not (tmp_path / "x.mp4").exists()


def test_a_file_without_sound_is_refused_where_a_sound_is_read(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "still.png")
    code = main(["visualize", "--workdir", str(tmp_path / "no-run"), "still.png", "--out",
                 "clip.mp4"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("o1: error: still.png has no audio track; give a sound file")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "clip.mp4").exists()
