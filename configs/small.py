"""Small: 128x128 clips and a 77M-parameter transformer, sized for one GPU.

    o1 data build avshapes --out data/avshapes128 --config small
    o1 tokenizers train --workdir runs/small --data data/avshapes128 --config small
    o1 data encode --workdir runs/small --data data/avshapes128
    o1 train --workdir runs/small
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
        name="small",
        data=DataConfig(
            height=128, width=128, fps=16, seconds=2.0, sample_rate=16_000,
            holdout=("red triangle", "blue circle"),
            num_train=20_000, num_val=500, num_test=500, num_holdout=500,
        ),
        text=TextConfig(vocab_size=512),
        # 4x8x8: a 16x16x16 latent grid per latent frame, as quickstart's at 64x64.
        video_vae=VideoVAEConfig(
            t_down=4, s_down=8, channels=16, widths=(64, 128, 256), steps=20_000,
            batch_size=16, train_crop=3, optimizer="muon", learning_rate=0.02,
            adam_learning_rate=0.01, warmup_steps=200),
        audio=AudioConfig(n_fft=1024, hop=250, n_mels=128, a_down=4, channels=16,
                          widths=(64, 128), steps=20_000, batch_size=16, learning_rate=3e-3),
        tokenizer_train=TokenizerTrainConfig(log_every=100, checkpoint_every=1000,
                                             stats_clips=1024),
        # 12 blocks of width 768 with 4 KV heads for 12 query heads (grouped-query attention),
        # run as one scan so the step compiles one block, however deep (o1 bench compile_time).
        model=ModelConfig(d_model=768, num_layers=12, num_heads=12, num_kv_heads=4,
                          head_dim=64, mlp_dim=2048, dtype="bfloat16", scan_layers=True),
        sequence=SequenceConfig(video_patch=2, max_text_len=48, examples_per_row=1),
        train=TrainConfig(steps=50_000, batch_size=32, learning_rate=3e-4, warmup_steps=1000,
                          log_every=50, eval_every=1000, eval_batches=4,
                          checkpoint_every=1000),
    )
