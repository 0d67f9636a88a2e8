"""Quickstart: 64x64 AV-Shapes clips, minutes on a 2-core CPU.

    o1 data build avshapes --out data/avshapes --config quickstart
"""

from o1.config import AudioConfig, Config, DataConfig, VideoVAEConfig


def get_config() -> Config:
    return Config(
        name="quickstart",
        data=DataConfig(
            height=64, width=64, fps=16, seconds=2.0, sample_rate=16_000,
            # Two colour+shape pairs never seen in train measure compositional generalization.
            holdout=("red triangle", "blue circle"),
            num_train=2000, num_val=200, num_test=200, num_holdout=200,
        ),
        video_vae=VideoVAEConfig(t_down=4, s_down=8, channels=16),
        # 16 kHz / (250 * 4) = 16 audio latents/s = 4 per video latent (16 fps / 4).
        audio=AudioConfig(n_fft=1024, hop=250, n_mels=64, a_down=4, channels=16),
    )
