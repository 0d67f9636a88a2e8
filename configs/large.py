"""Large: small's 128x128 clips and tokenizers under a 951M-parameter transformer, sized for
one 80 GB GPU.

    o1 data build avshapes --out data/avshapes128 --config small
    o1 tokenizers train --workdir runs/large --data data/avshapes128 --config large
    o1 data encode --workdir runs/large --data data/avshapes128
    o1 train --workdir runs/large --config large

The data, text, video_vae and audio sections are small's, so a small workdir's tokenizers
and latent cache serve too: copy runs/small without its checkpoints/ and run `o1 train` on
the copy with --config large. Eight GPUs and several hosts: docs/gpu.md.

Sequence: a clip is 9 latent frames of 8x8 patch tokens (576) and 33 audio latents, plus
up to 48 caption tokens and 2 media markers: 659 tokens; a row packs 2 examples, 1318.

Memory on one 80 GB GPU, of which JAX takes 75% (60 GB) by default, for 951M parameters (P)
and 21,088 tokens a step (16 rows x 1318):
  parameters, float32             4 B x P = 3.8 GB
  gradients, float32              4 B x P = 3.8 GB
  AdamW moments, float32          8 B x P = 7.6 GB
  bfloat16 weight copies          2 B x P = 1.9 GB
  activations kept for backward   remat="dots" keeps each block's matmul outputs in bfloat16:
                                  q (4 kB a token), k and v (2 kB each), attention projection
                                  (4 kB), gate and up of 5632 (11 kB each), MLP output (4 kB),
                                  and the block's input (4 kB): 42 kB x 20 blocks x 21,088
                                  tokens = 18 GB
  the block being recomputed      ~145 kB a token (everything one block keeps without remat,
                                  float32 norm and QK-norm copies included) x 21,088 = 3.1 GB
  total                           ~38 GB. 32 rows (~59 GB) need XLA_PYTHON_CLIENT_MEM_FRACTION
                                  =0.95; without remat, 20 blocks of 145 kB a token are 61 GB
                                  of activations alone.
The per-token figures are what `jax.ad_checkpoint` lists as saved residuals for this model.
"""

import dataclasses

from o1.config import Config, ModelConfig, SequenceConfig, TrainConfig
from o1.configs import small


def get_config() -> Config:
    return dataclasses.replace(
        small.get_config(),
        name="large",
        # 20 blocks of width 2048; 16 query heads of 128 over 8 KV heads; one scan over blocks.
        model=ModelConfig(d_model=2048, num_layers=20, num_heads=16, num_kv_heads=8,
                          head_dim=128, mlp_dim=5632, dtype="bfloat16", attention="auto",
                          remat="dots", scan_layers=True),
        sequence=SequenceConfig(video_patch=2, max_text_len=48, examples_per_row=2),
        train=TrainConfig(steps=50_000, batch_size=16, learning_rate=2e-4, warmup_steps=1000,
                          log_every=50, eval_every=1000, eval_batches=4,
                          checkpoint_every=1000),
    )
