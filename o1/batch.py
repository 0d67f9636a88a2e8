"""What a batch of token rows holds, and which keys see which: defined once for the sequence
builder (numpy, in the data pipeline), the model and losses (jax), the trainer and the sampler.

Axes: B rows, L tokens of a row (queries), S keys, F media features.

A built example has every `Batch` key but `segment_ids` ([n] arrays); packing examples into rows
adds it. Arrays are numpy in the pipeline and jax arrays inside jitted code: the containers are
typed dicts, so both are pytrees with the same keys.
"""

from __future__ import annotations

from typing import Any, TypedDict

Array = Any  # numpy or jax array

TEXT, VIDEO, AUDIO = 0, 1, 2  # values of `modality`


class ModelInputs(TypedDict):
    """What the model reads of each token."""

    tokens: Array  # int32 [B, L]: text ids (0 on media tokens)
    modality: Array  # int32 [B, L]: TEXT, VIDEO or AUDIO
    segment_ids: Array  # int32 [B, L]: packed example 1, 2, ... of the row; 0 = padding
    block: Array  # int32 [B, L]: segment of the example (PAD_BLOCK on padding)
    positions: Array  # int32 [B, L, 3]: rotary (time, row, column)
    media: Array  # float32 [B, L, F]: noised latents of media tokens (0 on text)
    noise: Array  # float32 [B, L]: noise level of media tokens (0 = clean context)


class Batch(ModelInputs):
    """Model inputs plus what the losses need."""

    targets: Array  # int32 [B, L]: next text id where the LM loss applies
    text_loss: Array  # float32 [B, L]: weight of the LM loss per token
    media_loss: Array  # float32 [B, L]: weight of the flow loss per token
    task: Array  # int32 [B, L]: the task id of the token's example (o1.sequence.TASK_IDS)


MODEL_INPUTS: tuple[str, ...] = tuple(ModelInputs.__annotations__)
BATCH_KEYS: tuple[str, ...] = tuple(Batch.__annotations__)
# The keys of one built example: everything but `segment_ids`, which packing assigns.
EXAMPLE_KEYS: tuple[str, ...] = tuple(k for k in BATCH_KEYS if k != "segment_ids")


def only_batch(batch: dict) -> Batch:
    """The `Batch` keys of a dict (extra keys a pipeline carries dropped)."""
    return {k: batch[k] for k in BATCH_KEYS}  # type: ignore[return-value]


def attention_mask(q_segment, q_block, q_modality, q_index, k_segment, k_block, k_index):
    """bool [B, L, S]: which keys each query sees (numpy or jax arrays alike).

    A query sees a key of the same packed example (segment id, 0 = padding) that is not in its
    future, and, if the query is a media token, every key of its own block (a whole media
    segment, or one latent time step of it under frame-causal attention). Padding queries see
    only themselves, so no softmax row is empty. `*_segment`, `*_block`, `q_modality` are
    [B, L] / [B, S]; `*_index` are absolute positions, [L] for queries and [S] for keys.
    """
    same = (q_segment[:, :, None] == k_segment[:, None, :]) & (q_segment[:, :, None] != 0)
    past = k_index[None, None, :] <= q_index[None, :, None]
    whole_block = (q_block[:, :, None] == k_block[:, None, :]) & (
        q_modality[:, :, None] != TEXT)
    pad_self = (q_segment[:, :, None] == 0) & (k_index[None, None, :] == q_index[None, :, None])
    return (same & (past | whole_block)) | pad_self
