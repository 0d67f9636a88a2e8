"""Tiny: 32x32 clips and a handful of examples, for tests that run every stage in seconds.

    o1 data build avshapes --out /tmp/avshapes --config tiny
    o1 tokenizers train --workdir /tmp/run --data /tmp/avshapes --config tiny
    o1 data encode --workdir /tmp/run --data /tmp/avshapes
    o1 train --workdir /tmp/run
"""

from o1.config import (
    AudioConfig,
    Config,
    DataConfig,
    ModelConfig,
    SequenceConfig,
    TextConfig,
    TokenizerTrainConfig,
    TrainConfig,
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
        tokenizer_train=TokenizerTrainConfig(log_every=2, checkpoint_every=4, stats_clips=16),
        # Grouped KV heads (4 query heads over 2) and two examples per row, so tests exercise
        # both; float32 so sharded and single-device losses agree to float tolerance.
        model=ModelConfig(d_model=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                          mlp_dim=128, dtype="float32"),
        sequence=SequenceConfig(video_patch=2, max_text_len=24, examples_per_row=2),
        train=TrainConfig(steps=8, batch_size=8, learning_rate=3e-3, warmup_steps=2,
                          log_every=2, eval_every=4, eval_batches=1, checkpoint_every=4),
    )
