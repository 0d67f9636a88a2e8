"""Audio tokenizer: waveform <-> normalized log-mel <-> audio VAE latents.

Axis letters used in tensor names:

  B batch, N waveform samples, F mel frames, M mel bands, K linear-frequency bins
  (n_fft // 2 + 1), a audio latents, C channels (latent channels, or conv widths inside the
  network), L time steps at whatever rate a layer works (F padded to a * a_down, down to a).

Time alignment (docs/design.md, "Clip geometry and time alignment"): mel frame j describes the
samples around [j * hop, (j + 1) * hop), so a clip of N samples has F = ceil(N / hop) frames and
audio latent i, made from mel frames [i * a_down, (i + 1) * a_down), covers the time
[i * hop * a_down, (i + 1) * hop * a_down) / sample_rate. To get there the STFT runs with
`center=False` on the waveform padded by (n_fft - hop) // 2 samples on the left (and enough on
the right for F whole windows): window j then spans padded samples [j * hop, j * hop + n_fft),
whose centre is original sample j * hop + hop / 2, the middle of the hop it owns. librosa's
`center=True` would centre frame j on sample j * hop instead (half a hop early) and make
1 + N // hop frames, one too many when hop divides N. The padding mirrors the waveform: a clip
edge is a cut, not silence, and zeros there come back from the vocoder as a quiet start that an
onset detector hears as a sound beginning.

Normalization: mel magnitudes (power 1, Slaney mel filters, librosa's defaults) become
log(mel + 1e-5), mapped affinely so the floor log(1e-5) goes to -1 and log(10) to +1. A
full-scale tone peaks near +1 (0.98 with n_fft 1024 and 64 bands, 1.03 with 128 bands),
AV-Shapes tones near +0.85, its background noise near -0.3, and digital silence is exactly -1.
Fixed constants (rather than dataset statistics) keep a clip's features independent of the
dataset it came from.
"""

from __future__ import annotations

import functools
import math
from typing import Protocol

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import scipy.signal
import scipy.sparse
from flax import nnx

from o1.config import AudioConfig
from o1.tokenizers import gaussian

LOG_MEL_FLOOR = 1e-5  # added to mel magnitudes before the log; silence maps to -1
_LOG_LOW = math.log(LOG_MEL_FLOOR)  # normalized -1
_LOG_HIGH = math.log(10.0)  # normalized +1
SILENCE = -1.0  # normalized log-mel of digital silence


def num_mel_frames(num_samples: int, hop: int) -> int:
    """F = ceil(N / hop): one frame per hop, the last one zero-padded."""
    return -(-num_samples // hop)


def _stft_padding(num_samples: int, n_fft: int, hop: int) -> tuple[int, int]:
    """Samples to add (left, right) so `center=False` windows are centred on their hops."""
    left = (n_fft - hop) // 2
    frames = num_mel_frames(num_samples, hop)
    right = (frames - 1) * hop + n_fft - left - num_samples
    return left, right


@functools.lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney mel filterbank float32 [M, K] (0 Hz to Nyquist), shared by features and vocoder."""
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _sparse_mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> scipy.sparse.csr_array:
    return scipy.sparse.csr_array(mel_filters(sample_rate, n_fft, n_mels))


@functools.lru_cache(maxsize=8)
def _mel_pinv(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Pseudo-inverse of `mel_filters`, float32 [K, M]."""
    return np.linalg.pinv(mel_filters(sample_rate, n_fft, n_mels)).astype(np.float32)


def normalize(mel: np.ndarray) -> np.ndarray:
    """Mel magnitudes (>= 0) -> normalized log-mel, same shape."""
    log = np.log(mel + LOG_MEL_FLOOR)
    return ((log - _LOG_LOW) / (_LOG_HIGH - _LOG_LOW) * 2.0 - 1.0).astype(np.float32)


def denormalize(log_mel: np.ndarray) -> np.ndarray:
    """Normalized log-mel -> mel magnitudes (>= 0), the inverse of `normalize`."""
    log = (np.asarray(log_mel, np.float64) + 1.0) / 2.0 * (_LOG_HIGH - _LOG_LOW) + _LOG_LOW
    return np.maximum(np.exp(log) - LOG_MEL_FLOOR, 0.0).astype(np.float32)


def log_mel(audio: np.ndarray, cfg: AudioConfig, sample_rate: int) -> np.ndarray:
    """Normalized log-mel features of mono audio.

    Args:
      audio: float32 [N] or [B, N] waveform(s) in [-1, 1].
      cfg: n_fft, hop and n_mels.
      sample_rate: samples per second of `audio`.

    Returns:
      float32 [F, M] or [B, F, M] with F = ceil(N / hop) and M = n_mels; frame j describes
      samples [j * hop, (j + 1) * hop) (see the module docstring).
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim not in (1, 2) or audio.shape[-1] == 0:
        raise ValueError(f"log_mel needs a waveform [N] or a batch [B, N] with N > 0, "
                         f"got shape {audio.shape}")
    left, right = _stft_padding(audio.shape[-1], cfg.n_fft, cfg.hop)
    padded = np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(left, right)], mode="reflect")
    spec_bkf = np.abs(librosa.stft(padded, n_fft=cfg.n_fft, hop_length=cfg.hop, center=False))
    batch, bins, frames = spec_bkf.reshape(-1, *spec_bkf.shape[-2:]).shape
    # Each frequency bin feeds at most two mel filters, so a sparse product is ~50x cheaper
    # than a dense one, and it stays single-threaded: a BLAS matmul here slowed 30x when it
    # competed for the cores with a running XLA computation or another process.
    spec_kx = spec_bkf.reshape(batch, bins, frames).transpose(1, 0, 2).reshape(bins, -1)
    mel_mx = _sparse_mel_filters(sample_rate, cfg.n_fft, cfg.n_mels) @ spec_kx
    mel_bfm = mel_mx.reshape(cfg.n_mels, batch, frames).transpose(1, 2, 0)
    return normalize(mel_bfm).reshape(*audio.shape[:-1], frames, cfg.n_mels)


# ---------------------------------------------------------------------------------------------
# Vocoders: normalized log-mel -> waveform
# ---------------------------------------------------------------------------------------------


class Vocoder(Protocol):
    """Turns normalized log-mel back into a waveform, time-aligned with the frames."""

    def __call__(self, log_mel: np.ndarray, num_samples: int) -> np.ndarray:
        """float32 [F, M] or [B, F, M] -> float32 [N] or [B, N], N = num_samples."""
        ...


class GriffinLimVocoder:
    """Mel -> linear magnitudes by clipped least squares, then Griffin-Lim phases.

    Deterministic: the phase initialization is seeded.
    """

    def __init__(self, cfg: AudioConfig, sample_rate: int, seed: int = 0):
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.seed = seed

    def __call__(self, log_mel: np.ndarray, num_samples: int) -> np.ndarray:
        """Reconstructs waveforms.

        Args:
          log_mel: float32 [F, M] or [B, F, M] normalized log-mel, as `log_mel` makes it.
          num_samples: N, the length of the clip the frames came from; F must equal
            ceil(N / hop).

        Returns:
          float32 [N] or [B, N]; a sound at sample s of the original comes back at s.
        """
        cfg = self.cfg
        log_mel = np.asarray(log_mel, np.float32)
        if log_mel.ndim not in (2, 3) or log_mel.shape[-1] != cfg.n_mels:
            raise ValueError(f"expected log-mel [F, {cfg.n_mels}] or [B, F, {cfg.n_mels}], "
                             f"got shape {log_mel.shape}")
        frames = log_mel.shape[-2]
        if frames != num_mel_frames(num_samples, cfg.hop):
            raise ValueError(f"{frames} mel frames cannot make {num_samples} samples: that "
                             f"needs ceil({num_samples} / hop {cfg.hop}) = "
                             f"{num_mel_frames(num_samples, cfg.hop)} frames")
        spec_bkf = linear_magnitudes(log_mel.reshape(-1, frames, cfg.n_mels), cfg,
                                     self.sample_rate)
        # Griffin-Lim leaves the first and last window's worth of samples inconsistent (quieter,
        # which an onset detector hears as a sound starting). Mirrored extra frames on both
        # sides, like the mirrored waveform padding of `log_mel`, move those edges outside the
        # clip.
        extra = min(frames - 1, -(-cfg.n_fft // cfg.hop))
        spec_bkf = np.pad(spec_bkf, ((0, 0), (0, 0), (extra, extra)), mode="reflect")
        padded = librosa.griffinlim(spec_bkf, n_iter=cfg.griffin_lim_iters, hop_length=cfg.hop,
                                    n_fft=cfg.n_fft, center=False,
                                    random_state=np.random.default_rng(self.seed))
        left = _stft_padding(num_samples, cfg.n_fft, cfg.hop)[0] + extra * cfg.hop
        wave_bn = padded[:, left:left + num_samples].astype(np.float32)
        return wave_bn.reshape(*log_mel.shape[:-2], num_samples)


def linear_magnitudes(log_mel_bfm: np.ndarray, cfg: AudioConfig, sample_rate: int
                      ) -> np.ndarray:
    """Normalized log-mel [B, F, M] -> linear STFT magnitudes [B, K, F].

    The least-squares (pseudo-inverse) solution clipped at zero. It is where librosa's NNLS
    (mel_to_stft) starts, and on these features its L-BFGS-B refinement changed neither the
    mel fit (relative error 6e-4 either way) nor the onsets, pitch or log-spectral distance of
    the result, at 100x the cost (0.25 s/clip)."""
    mel_bfm = denormalize(log_mel_bfm)
    batch, frames, _ = mel_bfm.shape
    mel_mx = mel_bfm.reshape(batch * frames, cfg.n_mels).T
    spec_kx = np.maximum(_mel_pinv(sample_rate, cfg.n_fft, cfg.n_mels) @ mel_mx, 0.0)
    return spec_kx.reshape(-1, batch, frames).transpose(1, 0, 2)


class GriffinLimStream:
    """Griffin-Lim over a stream of mel frames, for sound handed out while it is made.

    Each call takes the next frames and hands out the samples that are settled: those of
    every frame so far but the last `hold` (their windows still reach frames not yet given),
    which wait for the next call or `flush`. The samples already handed out are held fixed
    while the new ones are iterated (with the momentum of fast Griffin-Lim, as
    `GriffinLimVocoder` runs it), phases starting from what the last call made, so the new
    phases continue the old ones; the first samples handed out fade in from the last call's
    own samples past its end, so a tone runs on without a seam. Cost and memory per call
    depend on its frames, not on how long the stream has run; the output is deterministic for
    a seed and a sequence of calls.
    """

    MOMENTUM = 0.99

    def __init__(self, cfg: AudioConfig, sample_rate: int, seed: int = 0):
        self.cfg, self.sample_rate = cfg, sample_rate
        self.rng = np.random.default_rng(seed)
        self.left = (cfg.n_fft - cfg.hop) // 2  # samples before frame 0's hop in its window
        self.hold = -(-cfg.n_fft // cfg.hop)  # frames a window of n_fft samples spans
        self.window = scipy.signal.get_window("hann", cfg.n_fft, fftbins=True).astype(
            np.float32)
        self.samples = 0  # samples handed out so far
        empty = np.zeros((cfg.n_fft // 2 + 1, 0), np.float32)
        # magnitudes [K, n] of the last frames handed out (the context) and of those waiting
        self._context, self._waiting = empty, empty
        # the samples handed out from the context's first frame on (after `left` padding)
        self._signal = np.zeros(0, np.float32)
        self._unsettled = np.zeros(0, np.float32)  # the last call's samples after them

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        """float32 [F, M] normalized log-mel of the next F frames -> float32 [n * hop], the
        samples now settled (n = F at a steady state; fewer at the start)."""
        cfg = self.cfg
        log_mel = np.asarray(log_mel, np.float32)
        if log_mel.ndim != 2 or log_mel.shape[1] != cfg.n_mels:
            raise ValueError(f"expected log-mel [F, {cfg.n_mels}], got shape {log_mel.shape}")
        new = linear_magnitudes(log_mel[None], cfg, self.sample_rate)[0]  # [K, F]
        return self._run(np.concatenate([self._waiting, new], axis=1), self.hold)

    def flush(self) -> np.ndarray:
        """The samples of the frames still waiting: the end of the stream."""
        return self._run(self._waiting, 0)

    def _run(self, mags_new: np.ndarray, hold: int) -> np.ndarray:
        hop, n_fft = self.cfg.hop, self.cfg.n_fft
        f = mags_new.shape[1]
        out_frames = max(f - hold, 0)
        if not out_frames:
            self._waiting = mags_new
            return np.zeros(0, np.float32)
        context = self._context.shape[1]
        # Frames past the last are mirrored, as the offline vocoder mirrors a clip's end.
        extra = min(self.hold, f - 1)
        mags = np.concatenate([self._context, mags_new,
                               mags_new[:, f - 1 - extra:f - 1][:, ::-1]], axis=1)
        n = mags.shape[1]
        length = (n - 1) * hop + n_fft
        fixed = len(self._signal)
        emit = context * hop + self.left if self.samples else self.left
        index = np.arange(n)[:, None] * hop + np.arange(n_fft)  # [n, n_fft] frame samples

        def overlap_add(frames):  # [n, n_fft] -> [length]
            y = np.zeros(length, np.float32)
            for j in range(n):
                y[j * hop:j * hop + n_fft] += frames[j]
            return y

        norm = overlap_add(np.broadcast_to(self.window ** 2, (n, n_fft)))
        norm = np.where(norm > 1e-6, norm, 1.0)

        def stft(x):  # [length] -> [K, n]
            return np.fft.rfft(x[index] * self.window, axis=1).T

        def istft(spec):  # [K, n] -> [length], the handed-out samples as they were
            y = overlap_add(np.fft.irfft(spec.T, n=n_fft, axis=1) * self.window) / norm
            y[:fixed] = self._signal
            return y

        # Phases start from the last call's samples where it made them (the handed-out ones
        # and those of the frames that waited), at random where nothing was made yet.
        angles = np.exp(2j * np.pi * self.rng.random(mags.shape))
        known = fixed + len(self._unsettled)
        if known:
            x = np.zeros(length, np.float32)
            x[:known] = np.concatenate([self._signal, self._unsettled])[:length]
            made = min(n, context + self._waiting.shape[1])
            angles[:, :made] = np.exp(1j * np.angle(stft(x)[:, :made]))
        previous = np.zeros_like(angles)
        for _ in range(self.cfg.griffin_lim_iters):
            rebuilt = stft(istft(mags * angles))
            angles = rebuilt - (self.MOMENTUM / (1 + self.MOMENTUM)) * previous
            angles /= np.abs(angles) + 1e-16
            previous = rebuilt
        y = istft(mags * angles)
        end = emit + out_frames * hop
        out = y[emit:end].astype(np.float32)
        # Fade in from the samples the last call made past what it handed out.
        fade = min(len(self._unsettled), len(out))
        if fade:
            w = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            out[:fade] = (1 - w) * self._unsettled[:fade] + w * out[:fade]
            y[emit:emit + fade] = out[:fade]
        keep = min(self.hold, context + out_frames)  # context frames of the next call
        start = (context + out_frames - keep) * hop
        self._signal = y[start:end].astype(np.float32)
        self._unsettled = y[end:end + (f - out_frames) * hop].astype(np.float32)
        self._context = mags[:, context + out_frames - keep:context + out_frames]
        self._waiting = mags_new[:, out_frames:]
        self.samples += len(out)
        return out


def make_vocoder(cfg: AudioConfig, sample_rate: int) -> Vocoder:
    """The vocoder `cfg.vocoder` names."""
    if cfg.vocoder == "griffin_lim":
        return GriffinLimVocoder(cfg, sample_rate)
    raise ValueError(f"unknown audio.vocoder {cfg.vocoder!r}; choose 'griffin_lim'")


# ---------------------------------------------------------------------------------------------
# Audio VAE over mel time
# ---------------------------------------------------------------------------------------------


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def level_strides(a_down: int, levels: int) -> list[int]:
    """Splits a_down into `levels - 1` integer strides, one between consecutive widths.

    Prime factors are handed out greedily to the level with the smallest stride so far, so
    a_down 4 over 3 widths is (2, 2) and over 2 widths is (4,).
    """
    if levels < 2:
        if a_down == 1:
            return []
        raise ValueError(f"audio.widths needs at least 2 entries to downsample mel time by "
                         f"a_down={a_down}, e.g. audio.widths=[128,256]")
    strides = [1] * (levels - 1)
    for f in sorted(_prime_factors(a_down), reverse=True):
        strides[strides.index(min(strides))] *= f
    return strides


class _ResBlock(nnx.Module):
    """x + conv(silu(conv(silu(x)))), kernel 3 over time, width kept."""

    def __init__(self, width: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(width, width, kernel_size=3, padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(width, width, kernel_size=3, padding="SAME", rngs=rngs)

    def __call__(self, x_blc: jax.Array) -> jax.Array:
        return x_blc + self.conv2(nnx.silu(self.conv1(nnx.silu(x_blc))))


class _Down(nnx.Module):
    """Downsamples time by `stride`: step i sees input steps [i * s - p, (i + 1) * s + p)."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, rngs: nnx.Rngs):
        # Kernel s + 2p padded by p on each side: centred on the s-long patch it replaces, so
        # latent i still describes mel frames [i * a_down, (i + 1) * a_down), with context.
        p = max(1, stride // 2)
        self.conv = nnx.Conv(c_in, c_out, kernel_size=stride + 2 * p, strides=stride,
                             padding=[(p, p)], rngs=rngs)

    def __call__(self, x_blc: jax.Array) -> jax.Array:
        return self.conv(x_blc)


class _Up(nnx.Module):
    """Upsamples time by `stride`: each step is repeated, then a kernel-3 conv smooths."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, rngs: nnx.Rngs):
        self.stride = stride
        self.conv = nnx.Conv(c_in, c_out, kernel_size=3, padding="SAME", rngs=rngs)

    def __call__(self, x_blc: jax.Array) -> jax.Array:
        return self.conv(jnp.repeat(x_blc, self.stride, axis=1))


class AudioVAE(nnx.Module):
    """1-D convolutional VAE over mel time, mel bands as input channels.

    `cfg.widths` are the conv widths of the resolution levels, full mel rate first; between
    consecutive levels time is downsampled (strides from `level_strides`, product a_down). Each
    level has one residual block in the encoder and one in the decoder.
    """

    def __init__(self, cfg: AudioConfig, *, rngs: nnx.Rngs):
        self.a_down = cfg.a_down
        widths = list(cfg.widths)
        strides = level_strides(cfg.a_down, len(widths))
        self.enc_in = nnx.Conv(cfg.n_mels, widths[0], kernel_size=3, padding="SAME", rngs=rngs)
        self.enc_blocks = nnx.List([_ResBlock(w, rngs=rngs) for w in widths])
        self.enc_down = nnx.List([_Down(widths[i], widths[i + 1], s, rngs=rngs)
                                  for i, s in enumerate(strides)])
        self.enc_out = nnx.Conv(widths[-1], 2 * cfg.channels, kernel_size=1, rngs=rngs)
        self.dec_in = nnx.Conv(cfg.channels, widths[-1], kernel_size=3, padding="SAME",
                               rngs=rngs)
        self.dec_blocks = nnx.List([_ResBlock(w, rngs=rngs) for w in widths])
        self.dec_up = nnx.List([_Up(widths[i + 1], widths[i], s, rngs=rngs)
                                for i, s in enumerate(strides)])
        self.dec_out = nnx.Conv(widths[0], cfg.n_mels, kernel_size=3, padding="SAME", rngs=rngs)

    def encode(self, mel_bfm: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Posterior of the latents.

        Args:
          mel_bfm: normalized log-mel [B, F, M]; F is padded with silence up to a multiple of
            a_down.

        Returns:
          mean and log-variance, each [B, a, C] with a = ceil(F / a_down).
        """
        frames = mel_bfm.shape[1]
        pad = -frames % self.a_down
        x = jnp.pad(jnp.asarray(mel_bfm, jnp.float32), ((0, 0), (0, pad), (0, 0)),
                    constant_values=SILENCE)
        x = self.enc_in(x)  # [B, L, C]
        for i, block in enumerate(self.enc_blocks):
            x = block(x)
            if i < len(self.enc_down):
                x = self.enc_down[i](nnx.silu(x))
        mean_bac, logvar_bac = jnp.split(self.enc_out(nnx.silu(x)), 2, axis=-1)
        return mean_bac, logvar_bac

    def decode(self, z_bac: jax.Array) -> jax.Array:
        """Latents [B, a, C] -> normalized log-mel [B, a * a_down, M] (crop to F yourself)."""
        x = self.dec_in(z_bac)
        for i in reversed(range(len(self.dec_blocks))):
            x = self.dec_blocks[i](x)
            if i > 0:
                x = self.dec_up[i - 1](nnx.silu(x))
        return self.dec_out(nnx.silu(x))

    def __call__(self, mel_bfm: jax.Array, key: jax.Array
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Encodes, samples z ~ N(mean, exp(logvar)) with `key`, decodes.

        Returns:
          reconstruction [B, F, M] (cropped to the input's F), mean and logvar [B, a, C].
        """
        mean, logvar = self.encode(mel_bfm)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        return self.decode(z)[:, :mel_bfm.shape[1]], mean, logvar


def loss_fn(model: AudioVAE, mel_bfm: jax.Array, key: jax.Array, kl_weight: float
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Reconstruction + kl_weight * KL(q(z|x) || N(0, I)).

    Args:
      model: the VAE.
      mel_bfm: normalized log-mel [B, F, M].
      key: the posterior sample's random key.
      kl_weight: weight of the KL term (mean over latent elements) against the reconstruction
        term (mean over mel elements).

    Returns:
      the scalar loss and metrics: 'loss', 'recon' (the reconstruction term: mean absolute
      error in normalized log-mel units), 'kl', 'mel_l1' (the same error, named for reports
      across models) and 'mel_mse' (mean squared error).
    """
    mel_bfm = jnp.asarray(mel_bfm, jnp.float32)
    recon, mean, logvar = model(mel_bfm, key)
    error = recon - mel_bfm
    # L1 on log-mel, as mel losses of neural vocoders use. Trained alike on AV-Shapes, squared
    # error did no better: both kept onsets (F1 >= 0.999) and pitch (0.99 of onsets).
    mel_l1 = jnp.mean(jnp.abs(error))
    recon_loss = mel_l1
    kl = gaussian.kl_to_standard_normal(mean, logvar)
    loss = recon_loss + kl_weight * kl
    return loss, {"loss": loss, "recon": recon_loss, "kl": kl, "mel_l1": mel_l1,
                  "mel_mse": jnp.mean(jnp.square(error))}
