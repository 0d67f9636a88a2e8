"""Analytic FLOPs of the unified model, and the peak they are compared with (MFU).

A multiply-add is 2 FLOPs. Forward FLOPs of a batch are the matmuls every real (non-padding)
token goes through, plus attention: QK^T and PV cost 2 * N * H each per (query, visible key)
pair, counted over the pairs the block-causal mask allows (whole media segments, not half of
them). Training is forward + backward = 3 x forward; recomputation under remat is not counted
(this is model FLOPs utilization, not hardware FLOPs).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from o1 import sequence
from o1.config import Config
from o1.model import MODULATIONS, NOISE_FEATURES

# Dense bf16 FLOP/s per device from vendor datasheets (no sparsity), by jax device_kind.
DATASHEET_BF16 = {
    "NVIDIA H200": 989e12,
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA L4": 121e12,
}


def matmul_flops_per_token(config: Config) -> int:
    """Forward matmul FLOPs of one token through embeddings, every block and every head."""
    m = config.model
    d, n, k, h = m.d_model, m.num_heads, m.num_kv_heads, m.head_dim
    attn = 2 * d * n * h + 2 * 2 * d * k * h + 2 * n * h * d  # q, k and v, o
    mlp = 3 * 2 * d * m.mlp_dim  # gate, up, down
    fv, fa = config.video_token_dim, config.audio.channels
    inputs = 2 * (fv + fa) * d + 2 * NOISE_FEATURES * d + 2 * d * d
    heads = 2 * d * (config.text.vocab_size + fv + fa)
    if m.noise_conditioning == "adaln":  # the shared and the final modulation projections
        inputs += 2 * d * (MODULATIONS + 2) * d
    return inputs + m.num_layers * (attn + mlp) + heads


def attention_flops_per_pair(config: Config) -> int:
    """Forward FLOPs of one (query, visible key) pair over all layers: QK^T and PV."""
    m = config.model
    return m.num_layers * 2 * 2 * m.num_heads * m.head_dim


def train_flops(config: Config, batch: dict[str, np.ndarray]) -> float:
    """FLOPs of one training step (forward + backward) on a built batch (numpy)."""
    segment, block, modality = batch["segment_ids"], batch["block"], batch["modality"]
    tokens = int((segment > 0).sum())
    pairs = sequence.visible_keys(segment, block, modality)
    forward = (matmul_flops_per_token(config) * tokens
               + attention_flops_per_pair(config) * pairs)
    return 3.0 * forward


def measure_peak(dtype: str, size: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of the best of `repeats` jitted [size x size] @ [size x size] matmuls (chained
    8 deep per call so dispatch overhead does not count) on this process's first device."""
    device = jax.local_devices()[0]
    a = jax.device_put(jnp.ones((size, size), dtype) / size, device)

    @jax.jit
    def chain(x):
        for _ in range(8):
            x = x @ a
        return x

    chain(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        chain(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 8 * 2 * size ** 3 / best


def peak_flops(config: Config) -> tuple[float, str]:
    """(peak FLOP/s of all devices together, where the figure comes from).

    The configured `train.peak_flops` (per device) wins; then a GPU's datasheet; on CPU the
    peak is measured now, once per host (fake CPU devices share its cores).
    """
    devices = jax.devices()
    if config.train.peak_flops > 0:
        return config.train.peak_flops * len(devices), "train.peak_flops"
    kind = devices[0].device_kind
    if devices[0].platform == "gpu":
        if kind in DATASHEET_BF16:
            return DATASHEET_BF16[kind] * len(devices), f"datasheet bf16 of {kind}"
        raise ValueError(f"no datasheet peak for {kind!r}; set train.peak_flops (FLOP/s per "
                         f"device)")
    # Every host measures its own machine; the job's peak is the sum over hosts.
    peak = measure_peak(config.model.dtype) * jax.process_count()
    return peak, f"measured {config.model.dtype} matmul on {devices[0].platform}"
