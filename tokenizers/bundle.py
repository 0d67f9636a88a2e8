"""The frozen tokenizers of a workdir, as one object that turns media into latents and back.

Latents leave this module normalized per channel with the statistics measured after
training (`<workdir>/{video,audio}_vae/latent_stats.json`), which is the scale the
transformer sees.

Axes: B batch, T frames, H W pixels, t latent frames, h w latent grid, N samples,
F mel frames, M mel bands, a audio latents, C channels.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import jax.numpy as jnp
import numpy as np
from flax import nnx

from o1 import checkpoint
from o1 import config as config_lib
from o1.config import Config
from o1.tokenizers import audio as audio_lib
from o1.tokenizers import text as text_lib
from o1.tokenizers import video_vae as video_lib

STATS_FILE = "latent_stats.json"


@dataclasses.dataclass(frozen=True)
class LatentStats:
    """Per-channel mean and std of a VAE's posterior means over training clips."""

    mean: np.ndarray  # float32 [C]
    std: np.ndarray  # float32 [C]

    def save(self, path: str | os.PathLike) -> None:
        path = pathlib.Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"mean": self.mean.tolist(), "std": self.std.tolist()}))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatentStats:
        data = json.loads(pathlib.Path(path).read_text())
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))

    @classmethod
    def measure(cls, latents: np.ndarray) -> LatentStats:
        """Statistics of latents [..., C] over every axis but the last."""
        flat = latents.reshape(-1, latents.shape[-1]).astype(np.float64)
        return cls(flat.mean(0).astype(np.float32),
                   np.maximum(flat.std(0), 1e-6).astype(np.float32))


def new_video_vae(config: Config, seed: int) -> video_lib.VideoVAE:
    v = config.video_vae
    return video_lib.VideoVAE(v, rngs=nnx.Rngs(seed), enc_blocks=v.encoder_blocks,
                              dec_blocks=v.decoder_blocks)


def restore_vae(directory: str | os.PathLike, model: nnx.Module) -> int:
    """Loads the latest checkpoint's parameters in `directory` into `model`; returns its step."""
    steps = checkpoint.committed_steps(directory)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    state = nnx.state(model)
    if "params" in checkpoint.state_keys(directory, steps[-1]):
        restored, step = checkpoint.restore(directory, {"params": checkpoint.abstract(state)},
                                            steps[-1])
        nnx.update(model, restored["params"])
    else:  # written before the VAEs shared the transformer's loop: {model, opt}
        restored, step = checkpoint.restore(
            directory, {"model": checkpoint.abstract(nnx.to_pure_dict(state))}, steps[-1])
        nnx.replace_by_pure_dict(state, restored["model"])
        nnx.update(model, state)
    return step


def config_path(workdir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(workdir) / "config.json"


def load_config(workdir: str | os.PathLike) -> Config:
    path = config_path(workdir)
    if not path.is_file():
        raise FileNotFoundError(f"{workdir} has no config.json; train tokenizers first with "
                                f"`o1 tokenizers train --workdir {workdir} --data DIR`")
    return config_lib.load(path)


def video_pixels(video: np.ndarray) -> jnp.ndarray:
    """uint8 [..., 3] -> float32 in [-1, 1]."""
    return jnp.asarray(video, jnp.float32) / 127.5 - 1.0


def video_bytes(video) -> np.ndarray:
    """float in [-1, 1] -> uint8."""
    return np.asarray(np.clip(np.rint((np.asarray(video) + 1.0) * 127.5), 0, 255), np.uint8)


class Tokenizers:
    """Text, video and audio tokenizers restored from a workdir, frozen."""

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = pathlib.Path(workdir)
        self.config = load_config(workdir)
        c = self.config
        self.text = text_lib.TextTokenizer(self.workdir / text_lib.FILENAME)
        self.video_vae = new_video_vae(c, 0)
        restore_vae(self.workdir / "video_vae" / "checkpoints", self.video_vae)
        self.audio_vae = audio_lib.AudioVAE(c.audio, rngs=nnx.Rngs(0))
        restore_vae(self.workdir / "audio_vae" / "checkpoints", self.audio_vae)
        self.video_stats = LatentStats.load(self.workdir / "video_vae" / STATS_FILE)
        self.audio_stats = LatentStats.load(self.workdir / "audio_vae" / STATS_FILE)
        self.vocoder = audio_lib.make_vocoder(c.audio, c.data.sample_rate)
        self._encode_video = nnx.jit(lambda m, x: m.encode(x)[0])
        self._decode_video = nnx.jit(lambda m, z: m.decode(z)[0])
        self._encode_audio = nnx.jit(lambda m, x: m.encode(x)[0])
        self._decode_audio = nnx.jit(lambda m, z: m.decode(z))

    def encode_video(self, video: np.ndarray) -> np.ndarray:
        """uint8 [B, T, H, W, 3] -> normalized latents float32 [B, t, h, w, C]."""
        mean = self._encode_video(self.video_vae, video_pixels(video))
        return np.asarray((mean - self.video_stats.mean) / self.video_stats.std, np.float32)

    def decode_video(self, latents: np.ndarray) -> np.ndarray:
        """Normalized latents [B, t, h, w, C] -> uint8 [B, T, H, W, 3]."""
        z = jnp.asarray(latents) * self.video_stats.std + self.video_stats.mean
        return video_bytes(self._decode_video(self.video_vae, z))

    def audio_mel(self, waveform: np.ndarray) -> np.ndarray:
        """float32 [B, N] -> normalized log-mel [B, F, M]."""
        return audio_lib.log_mel(waveform, self.config.audio, self.config.data.sample_rate)

    def encode_audio(self, waveform: np.ndarray) -> np.ndarray:
        """float32 [B, N] -> normalized latents float32 [B, a, C]."""
        mean = self._encode_audio(self.audio_vae, jnp.asarray(self.audio_mel(waveform)))
        return np.asarray((mean - self.audio_stats.mean) / self.audio_stats.std, np.float32)

    def decode_mel(self, latents: np.ndarray) -> np.ndarray:
        """Normalized latents [B, a, C] -> log-mel [B, F, M] (F of one clip)."""
        z = jnp.asarray(latents) * self.audio_stats.std + self.audio_stats.mean
        return np.asarray(self._decode_audio(self.audio_vae, z))[:, :self.config.num_mel_frames]

    def decode_audio(self, latents: np.ndarray) -> np.ndarray:
        """Normalized latents [B, a, C] -> waveform float32 [B, N]."""
        return self.vocoder(self.decode_mel(latents), self.config.num_samples)
