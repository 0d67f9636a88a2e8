"""Named configs, dotted overrides and validation messages."""

import dataclasses
import json

import pytest

from o1 import config as config_lib
from o1 import configs
from o1.config import ConfigError


@pytest.mark.parametrize("name", configs.NAMES)
def test_named_configs_are_valid_and_frozen(name):
    config = configs.get(name)
    assert config.name == name
    assert (config.num_frames - 1) % config.video_vae.t_down == 0
    assert config.latent_ratio >= 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.data.fps = 8  # type: ignore[misc]


def test_quickstart_geometry_matches_the_design():
    config = configs.get("quickstart")
    assert (config.data.height, config.data.width, config.data.fps) == (32, 32, 16)
    assert config.num_frames == 33  # 2 s at 16 fps, T = 1 + 4n
    assert config.latent_ratio == 4  # 16 kHz / (250 * 4) = 16/s = 4 x (16 fps / 4)
    assert len(config.data.holdout_pairs) == 2
    assert config.token_grid == (2, 2)  # 8x8 latents in 4x4 patches
    assert (configs.get("tiny").data.height, configs.get("tiny").data.width) == (32, 32)


def test_dotted_overrides_are_typed():
    config = configs.get("tiny", ["data.fps=8", "data.noise_level=0", "seed=3",
                                  "data.holdout=[green square,blue circle]"])
    assert config.data.fps == 8 and isinstance(config.data.fps, int)
    assert config.data.noise_level == 0.0 and config.seed == 3
    assert config.data.holdout_pairs == {("green", "square"), ("blue", "circle")}


@pytest.mark.parametrize("override, closest", [
    ("data.fsp=3", "data.fps"),
    ("vid.t_down=2", "video_vae.t_down"),
    ("audio.hopp=200", "audio.hop"),
])
def test_unknown_key_names_the_closest_valid_key(override, closest):
    with pytest.raises(ConfigError, match=f"did you mean '{closest}'"):
        configs.get("tiny", [override])


def test_bad_values_and_malformed_overrides():
    with pytest.raises(ConfigError, match="data.fps"):
        configs.get("tiny", ["data.fps=abc"])
    with pytest.raises(ConfigError, match="key=value"):
        configs.get("tiny", ["data.fps"])
    with pytest.raises(ConfigError, match="even"):
        configs.get("tiny", ["data.height=31"])
    with pytest.raises(ConfigError, match="'red circle'"):
        configs.get("tiny", ["data.holdout=[purple circle]"])
    with pytest.raises(ConfigError, match="choose one of"):
        configs.get("tinny")


def test_latent_rate_mismatch_names_the_nearest_valid_settings():
    with pytest.raises(ConfigError) as err:
        configs.get("quickstart", ["audio.hop=256"])
    message = str(err.value)
    assert "not an integer multiple of the video latent rate" in message
    assert "audio.hop=250 (k=4)" in message and "audio.hop=200 (k=5)" in message
    # Each suggested value really is valid.
    for hop in (250, 200):
        assert configs.get("quickstart", [f"audio.hop={hop}"]).latent_ratio in (4, 5)


def test_sample_rate_must_give_whole_samples_per_frame():
    with pytest.raises(ConfigError, match="data.sample_rate=16005 or 16020"):
        configs.get("tiny", ["data.sample_rate=16010", "data.fps=15"])


def test_config_json_round_trip():
    config = configs.get("quickstart", ["data.fps=8"])
    assert config_lib.from_dict(json.loads(config.to_json())) == config


def test_config_json_with_removed_keys_still_loads():
    """A workdir's config.json from before keys were removed (the loader's batch size,
    shuffle and seed, which nothing read) loads as the same config without them."""
    config = configs.get("quickstart")
    old = json.loads(config.to_json())
    old["loader"].update(batch_size=8, shuffle=True, seed=0)
    old["train"]["retired_option"] = 1
    old["retired_section"] = {"x": 1}
    assert config_lib.from_dict(old) == config


def test_every_field_is_overridable():
    keys = config_lib.valid_keys()
    assert "data.fps" in keys and "video_vae.t_down" in keys and "loader.worker_count" in keys
    assert "data" not in keys and "loader.batch_size" not in keys


@pytest.mark.parametrize("override, message", [
    ("video_vae.s_down=6", "power of 2"),
    ("video_vae.optimizer=sgd", "adam or muon"),
    ("audio.steps=0", "audio.steps must be positive"),
    ("text.vocab_size=4", "text.vocab_size must be >= 16"),
    ("audio.vocoder=hifigan", "griffin_lim"),
])
def test_tokenizer_sections_are_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        configs.get("tiny", [override])


def test_latent_counts_follow_the_geometry():
    config = configs.get("quickstart")
    assert config.num_video_latents == 9  # frame 0 alone, then 8 groups of 4
    assert config.num_mel_frames == 132 and config.num_audio_latents == 33  # 1 + 4 * 8


def test_a_config_json_from_before_the_sample_section_loads_its_defaults():
    config = configs.get("quickstart")
    old = json.loads(config.to_json())
    del old["sample"]
    # the named config's section (quickstart allows longer requests than the default)
    assert config_lib.from_dict(old).sample == config.sample


@pytest.mark.parametrize("override, message", [
    ("sample.steps=0", "sample.steps must be a whole number from 1 to 100"),
    ("sample.steps=101", r"sample.steps must be a whole number from 1 to 100 \(sample.max_steps"),
    ("sample.max_steps=0", "sample.max_steps must be >= 1"),
    ("sample.max_seconds=nan", "sample.max_seconds must be a finite number > 0"),
    ("sample.solver=rk4", "sample.solver must be one of euler, heun, got 'rk4'"),
    ("sample.cfg_audio=-1", "sample.cfg_audio must be from 0 to 20 .*got -1"),
    ("sample.cfg_video=inf", "sample.cfg_video must be from 0 to 20 .*got inf"),
    ("sample.cfg_video=25", r"sample.cfg_video must be from 0 to 20 \(1 = no guidance; "
                            r"sample.max_guidance\), got 25"),
    ("sample.seed=-1", "sample.seed must be a whole number from 0 to 2147483647"),
    ("sample.top_p=1.5", r"sample.top_p must be in \(0, 1\]"),
    ("sample.temperature=-0.5", "sample.temperature must be a finite number >= 0"),
])
def test_sample_section_is_validated(override, message):
    with pytest.raises(ConfigError, match=message):
        configs.get("tiny", [override])


def test_sample_limits_are_the_section_s_own():
    sample = configs.get("tiny", ["sample.max_steps=500", "sample.steps=300",
                                  "sample.max_guidance=40", "sample.cfg_video=30"]).sample
    assert (sample.steps, sample.cfg_video) == (300, 30)


def test_config_show_prints_json_that_loads_back(capsys):
    from o1.cli import main

    assert main(["config", "show", "--config", "tiny", "train.steps=7"]) == 0
    out, err = capsys.readouterr()
    loaded = config_lib.from_dict(json.loads(out))
    assert loaded == configs.get("tiny", ["train.steps=7"])
    assert "frames T=" in err


@pytest.mark.parametrize("name, low, high", [("medium", 280e6, 330e6), ("large", 0.9e9, 1.1e9)])
def test_one_gpu_configs_have_the_documented_size(name, low, high):
    from flax import nnx

    from o1.model import Model, num_params

    config = configs.get(name)
    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: Model(config, nnx.Rngs(0)))  # shapes only
    assert low < num_params(model) < high
    assert min(config.data.height, config.data.width) >= 128
    assert (config.model.dtype, config.model.attention) == ("bfloat16", "auto")
    assert config.model.scan_layers
    # A clip: 9 latent frames of 8x8 patch tokens, 33 audio latents, up to 48 caption tokens
    # and 2 media markers; a row packs two.
    rows, cols = config.token_grid
    assert (config.num_video_latents, rows, cols, config.num_audio_latents) == (9, 8, 8, 33)
    assert config.max_example_len == 9 * 8 * 8 + 33 + 48 + 2 == 659
    assert config.seq_len == 2 * 659
    # small's tokenizer sections, so a small workdir's latent cache serves
    assert not config_lib.differences(configs.get("small"), config,
                                      ("data", "text", "video_vae", "audio"))
