"""Training losses: caption cross-entropy and rectified flow on media, reported per task.

Axes: B batch, L positions, V vocabulary, F media features, T tasks, M modalities
(text, video, audio).

Rectified flow (docs/design.md, "Losses"): x_t = (1 - t) x_0 + t e, the model predicts v = e - x_0.
Each modality's loss is a mean over its lossed tokens in the whole batch; `denominators` makes
that exact under gradient accumulation (every micro-batch divides by the full batch's counts).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from o1.config import TASKS, Config
from o1.sequence import AUDIO, TEXT, VIDEO

MODALITIES = ("text", "video", "audio")


def noised(inputs: dict[str, jax.Array], key: jax.Array) -> tuple[dict, jax.Array]:
    """Replaces clean media features by x_t; returns (model inputs, velocity target [B, L, F])."""
    x0 = inputs["media"].astype(jnp.float32)
    eps = jax.random.normal(key, x0.shape, jnp.float32)
    t = inputs["noise"].astype(jnp.float32)[..., None]
    return {**inputs, "media": (1 - t) * x0 + t * eps}, eps - x0


def lossed(batch: dict[str, jax.Array]) -> jax.Array:
    """float32 [B, L, M]: 1 where a modality's loss applies to a token (0 on padding)."""
    modality, media = batch["modality"], batch["media_loss"].astype(jnp.float32)
    return jnp.stack([batch["text_loss"].astype(jnp.float32) * (modality == TEXT),
                      media * (modality == VIDEO), media * (modality == AUDIO)], axis=-1)


def denominators(batch: dict[str, jax.Array]) -> jax.Array:
    """float32 [M]: lossed tokens per modality in the batch (at least 1)."""
    return jnp.maximum(lossed(batch).sum((0, 1)), 1.0)


def token_losses(cfg: Config, logits, velocity, target_v, batch) -> tuple[jax.Array, jax.Array]:
    """Per-token losses [B, L, M] (0 where a modality's loss does not apply) and log(Z)^2."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    log_z = jax.nn.logsumexp(logits, axis=-1)
    width = jnp.where(batch["modality"] == VIDEO, cfg.video_token_dim, cfg.audio.channels)
    feature_ok = jnp.arange(velocity.shape[-1]) < width[..., None]
    mse = jnp.sum(jnp.where(feature_ok, (velocity - target_v) ** 2, 0.0), -1) / width
    weights = lossed(batch)
    return jnp.stack([ce, mse, mse], axis=-1) * weights, jnp.square(log_z) * weights[..., 0]


def loss_fn(cfg: Config, model, batch: dict[str, jax.Array], key: jax.Array,
            denom: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
    """The weighted training loss of a (micro-)batch and the sums behind per-task metrics.

    Args:
      batch: a built batch (o1.sequence) with clean media; noise is drawn here from `key`.
      denom: [M] lossed tokens per modality of the whole step's batch (`denominators`).

    Returns:
      (scalar loss, {"sums": [T, M] loss sums, "counts": [T, M] token counts}).
    """
    inputs, target_v = noised(batch, key)
    out = model(inputs)
    per_token, z_sq = token_losses(cfg, out.logits, out.velocity, target_v, batch)
    weights = jnp.asarray([cfg.loss.text_weight, cfg.loss.video_weight, cfg.loss.audio_weight])
    totals = per_token.sum((0, 1))  # [M]
    loss = jnp.sum(weights * totals / denom) + cfg.loss.z_loss * z_sq.sum() / denom[0]
    return loss, grouped(per_token, batch, len(TASKS))


def grouped(per_token: jax.Array, batch: dict[str, jax.Array], num_tasks: int) -> dict:
    """Loss sums and token counts per (task, modality)."""
    task = jax.nn.one_hot(batch["task"], num_tasks, dtype=jnp.float32)  # [B, L, T]
    return {"sums": jnp.einsum("blt,blm->tm", task, per_token),
            "counts": jnp.einsum("blt,blm->tm", task, lossed(batch))}


def report(sums, counts) -> dict[str, float]:
    """Host-side: {"task/modality": mean loss} for every pair that had tokens, plus
    per-modality means over all tasks ("all/video", ...)."""
    out = {}
    for i, task in enumerate(TASKS):
        for j, mod in enumerate(MODALITIES):
            if counts[i, j] > 0:
                out[f"{task}/{mod}"] = float(sums[i, j] / counts[i, j])
    for j, mod in enumerate(MODALITIES):
        if counts[:, j].sum() > 0:
            out[f"all/{mod}"] = float(sums[:, j].sum() / counts[:, j].sum())
    return out
