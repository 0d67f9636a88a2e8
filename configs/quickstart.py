"""Quickstart: 32x32 AV-Shapes clips; the whole of `o1 quickstart` in ~25 min on a 2-core CPU.

    o1 data build avshapes --out data/avshapes --config quickstart
    o1 tokenizers train --workdir runs/quickstart --data data/avshapes
    o1 data encode --workdir runs/quickstart --data data/avshapes
    o1 train --workdir runs/quickstart
"""

from o1.config import (
    AudioConfig,
    Config,
    DataConfig,
    ModelConfig,
    SampleConfig,
    SequenceConfig,
    TextConfig,
    TokenizerTrainConfig,
    TrainConfig,
    VideoVAEConfig,
)


def get_config() -> Config:
    return Config(
        name="quickstart",
        data=DataConfig(
            # 32x32 with objects of 0.35 of the box (11 px): at 64x64 the transformer saw too
            # few examples in the budget to draw objects at all.
            height=32, width=32, fps=16, seconds=2.0, sample_rate=16_000, object_size=0.35,
            # Two colour+shape pairs never seen in train measure compositional generalization.
            holdout=("red triangle", "blue circle"),
            num_train=2000, num_val=200, num_test=200, num_holdout=200,
        ),
        text=TextConfig(vocab_size=512),
        # 4x4x4 rather than the default 4x8x8: on a 2-core CPU this is what reaches >= 30 dB
        # PSNR within the tokenizer stage's budget. Muon on 9-frame windows trains fastest.
        # 4 latent channels, not 16: a 4x4 patch is then a 64-feature token instead of 256 (as
        # wide as the model), and in the same 450 steps generated clips went from no object of
        # the prompt's colour (0.00) to 0.28, at 1 dB less reconstruction PSNR.
        video_vae=VideoVAEConfig(
            t_down=4, s_down=4, channels=4, widths=(64,), encoder_blocks=1, decoder_blocks=3,
            steps=700, batch_size=8, train_crop=3, optimizer="muon", learning_rate=0.02,
            adam_learning_rate=0.01, warmup_steps=30),
        # 16 kHz / (250 * 4) = 16 audio latents/s = 4 per video latent (16 fps / 4).
        # 128 mel bands: with 64, Griffin-Lim moves tones below 1 kHz off pitch (bands ~46 Hz
        # apart), failing the pitch-at-onset bar even without the VAE.
        audio=AudioConfig(n_fft=1024, hop=250, n_mels=128, a_down=4, channels=16,
                          widths=(64, 128), steps=2000, batch_size=8, learning_rate=3e-3),
        tokenizer_train=TokenizerTrainConfig(log_every=50, checkpoint_every=250,
                                             stats_clips=256),
        # bf16 compute (float32 parameters and AdamW state): on the 2-core CPU a step takes
        # 1.95 s against 2.51 s in float32 (benchmarks/train_step.py).
        model=ModelConfig(d_model=256, num_layers=4, num_heads=4, num_kv_heads=4, head_dim=64,
                          mlp_dim=1024, dtype="bfloat16"),
        # 4x4 patches of the 8x8x4 latent grid: 4 video tokens per latent frame, 36 per clip,
        # plus 33 audio tokens and the caption (~100 tokens); three examples packed per row, so
        # a step sees 24 clips. Against six per row (48 clips, 0.43 steps/s), a step is 2.7x
        # faster (attention is quadratic in the row), and twice the steps on about the same
        # clips doubled the share of generated clips with the prompt's colour (0.28 -> 0.54).
        sequence=SequenceConfig(video_patch=4, max_text_len=32, examples_per_row=3),
        # Every checkpoint is kept: `o1 eval --checkpoint N` draws the quality curve.
        # Peak learning rate 3e-3: on the same latents, validation flow loss of text -> video
        # at step 1000 was 0.600 against 0.649 at 1e-3; 6e-3 trailed 3e-3 (0.817 vs 0.778 at
        # step 375) and was stopped.
        train=TrainConfig(steps=1000, batch_size=8, learning_rate=3e-3, warmup_steps=100,
                          log_every=20, eval_every=125, eval_batches=2, checkpoint_every=100,
                          keep_checkpoints=20),
        # A stream's cost per second is flat (o1.serve.stream), so minutes are fine here.
        sample=SampleConfig(max_seconds=300.0),
    )
