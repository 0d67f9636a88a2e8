"""Tiny: 32x32 clips and a handful of examples, for tests that run every stage in seconds.

    o1 data build avshapes --out /tmp/avshapes --config tiny
    o1 tokenizers train --workdir /tmp/run --data /tmp/avshapes --config tiny
"""

from o1.config import (
    AudioConfig,
    Config,
    DataConfig,
    LoaderConfig,
    TextConfig,
    TokenizerTrainConfig,
    VideoVAEConfig,
)


def get_config() -> Config:
    return Config(
        name="tiny",
        data=DataConfig(
            height=32, width=32, fps=16, seconds=2.0, sample_rate=16_000,
            holdout=("red triangle",),
            num_train=16, num_val=4, num_test=4, num_holdout=4,
        ),
        text=TextConfig(vocab_size=64),
        # Quality is irrelevant here; every stage just has to run end to end in seconds.
        video_vae=VideoVAEConfig(t_down=4, s_down=4, channels=4, widths=(8, 16), steps=8,
                                 batch_size=2, learning_rate=1e-3),
        audio=AudioConfig(n_fft=512, hop=250, n_mels=32, a_down=4, channels=4, widths=(16, 32),
                          steps=8, batch_size=4, learning_rate=1e-3, griffin_lim_iters=4),
        loader=LoaderConfig(batch_size=4),
        tokenizer_train=TokenizerTrainConfig(log_every=2, checkpoint_every=4, stats_clips=16),
    )
