"""Medium: small's 128x128 clips and tokenizers under a 305M-parameter transformer, sized for
one 80 GB GPU.

    o1 data build avshapes --out data/avshapes128 --config small
    o1 tokenizers train --workdir runs/medium --data data/avshapes128 --config medium
    o1 data encode --workdir runs/medium --data data/avshapes128
    o1 train --workdir runs/medium --config medium

The data, text, video_vae and audio sections are small's, so a small workdir's tokenizers
and latent cache serve too: copy runs/small without its checkpoints/ and run `o1 train` on
the copy with --config medium. Eight GPUs and several hosts: docs/gpu.md.

Sequence: a clip is 9 latent frames of 8x8 patch tokens (576) and 33 audio latents, plus
up to 48 caption tokens and 2 media markers: 659 tokens; a row packs 2 examples, 1318.

Memory on one 80 GB GPU, of which JAX takes 75% (60 GB) by default, for 305M parameters (P)
and 42,176 tokens a step (32 rows x 1318):
  parameters, float32             4 B x P = 1.2 GB
  gradients, float32              4 B x P = 1.2 GB
  AdamW moments, float32          8 B x P = 2.4 GB
  bfloat16 weight copies          2 B x P = 0.6 GB
  activations kept for backward   remat="dots" keeps each block's matmul outputs in bfloat16:
                                  q (2 kB a token), k and v (1 kB each), attention projection
                                  (2 kB), gate and up of 3072 (6 kB each), MLP output (2 kB),
                                  and the block's input (2 kB): 22 kB x 24 blocks x 42,176
                                  tokens = 22 GB
  the block being recomputed      76 kB a token (everything one block keeps without remat,
                                  float32 norm and QK-norm copies included) x 42,176 = 3.2 GB
  total                           ~31 GB. Without remat every block keeps those 76 kB a
                                  token: 77 GB of activations, more than the GPU holds.
The per-token figures are what `jax.ad_checkpoint` lists as saved residuals for this model.
"""

import dataclasses

from o1.config import Config, ModelConfig, SequenceConfig, TrainConfig
from o1.configs import small


def get_config() -> Config:
    return dataclasses.replace(
        small.get_config(),
        name="medium",
        # 24 blocks of width 1024; 16 query heads of 64 over 8 KV heads; one scan over blocks.
        model=ModelConfig(d_model=1024, num_layers=24, num_heads=16, num_kv_heads=8,
                          head_dim=64, mlp_dim=3072, dtype="bfloat16", attention="auto",
                          remat="dots", scan_layers=True),
        sequence=SequenceConfig(video_patch=2, max_text_len=48, examples_per_row=2),
        train=TrainConfig(steps=50_000, batch_size=32, learning_rate=3e-4, warmup_steps=1000,
                          log_every=50, eval_every=1000, eval_batches=4,
                          checkpoint_every=1000),
    )
