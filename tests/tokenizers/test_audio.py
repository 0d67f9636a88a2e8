"""Audio tokenizer: log-mel geometry and timing, Griffin-Lim alignment, the audio VAE, metrics."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from o1 import configs
from o1.avshapes import audio_metrics, generator, world
from o1.tokenizers import audio

SR = 16_000


@pytest.fixture(scope="module")
def quickstart():
    return configs.get("quickstart")


def _clicks(num_samples: int, positions: list[int]) -> np.ndarray:
    """One unit impulse per row: float32 [len(positions), N]."""
    wave = np.zeros((len(positions), num_samples), np.float32)
    wave[np.arange(len(positions)), positions] = 1.0
    return wave


# --- log-mel -------------------------------------------------------------------------------


@pytest.mark.parametrize("num_samples", [33_000, 33_001, 32_999, 4_000])
def test_log_mel_has_one_frame_per_hop(quickstart, num_samples):
    a = quickstart.audio
    wave = np.random.default_rng(0).normal(0, 0.1, (2, num_samples)).astype(np.float32)
    batch = audio.log_mel(wave, a, SR)
    assert batch.shape == (2, -(-num_samples // a.hop), a.n_mels)
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(audio.log_mel(wave[1], a, SR), batch[1])


def test_quickstart_frame_count_matches_config(quickstart):
    mel = audio.log_mel(np.zeros(quickstart.num_samples, np.float32), quickstart.audio, SR)
    assert mel.shape == (quickstart.num_mel_frames, quickstart.audio.n_mels)
    assert quickstart.num_mel_frames == 132  # 33 frames at 16 fps = 33000 samples, hop 250


def test_log_mel_normalization(quickstart):
    a = quickstart.audio
    silent = audio.log_mel(np.zeros(8_000, np.float32), a, SR)
    np.testing.assert_allclose(silent, audio.SILENCE, atol=1e-6)
    loud = audio.log_mel(generator.tone("square", 440.0, 8_000, SR) / world.TONE_AMPLITUDE,
                         a, SR)
    # A full-scale tone peaks near +1 ("roughly [-1, 1]"; 1.03 with 128 mel bands).
    assert -1.0 <= loud.min() and 0.5 < loud.max() < 1.2
    mel = np.array([0.0, 1e-3, 0.5, 10.0], np.float32)
    np.testing.assert_allclose(audio.denormalize(audio.normalize(mel)), mel, rtol=1e-5,
                               atol=1e-9)
    np.testing.assert_allclose(audio.normalize(mel)[[0, 3]], [-1.0, 1.0], atol=1e-6)


def test_log_mel_frame_j_owns_samples_of_hop_j(quickstart):
    """A click anywhere inside hop j is loudest in frame j (frames are centred on their hop)."""
    a = quickstart.audio
    positions = [1, 1_001, 5_125, 12_345, 20_249, 32_999]
    mel = audio.log_mel(_clicks(33_000, positions), a, SR)
    assert [int(np.argmax(m.mean(axis=-1))) for m in mel] == [p // a.hop for p in positions]


# --- vocoder ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["quickstart", "tiny"])
def test_griffin_lim_returns_a_click_at_its_sample(name):
    """log_mel -> Griffin-Lim: the energy of each click comes back centred on its sample."""
    # The geometry (n_fft, hop) under test is the config's; the iterations are not: tiny runs
    # 4 for speed, too few for consistent phases, which smears a click by a few ms.
    cfg = configs.get(name, ["audio.griffin_lim_iters=32"])
    n = cfg.num_samples
    positions = [5_000, 12_345, 20_125, n - 500]
    vocoder = audio.make_vocoder(cfg.audio, SR)
    assert isinstance(vocoder, audio.GriffinLimVocoder)
    wave = vocoder(audio.log_mel(_clicks(n, positions), cfg.audio, SR), n)
    assert wave.shape == (len(positions), n) and wave.dtype == np.float32
    for row, s in zip(wave, positions, strict=True):
        # Energy centroid over one window either side; a half-hop misalignment is 7.8 ms.
        lo, hi = s - cfg.audio.n_fft, min(n, s + cfg.audio.n_fft)
        energy = row[lo:hi].astype(np.float64) ** 2
        centroid = lo + np.sum(np.arange(hi - lo) * energy) / energy.sum()
        assert abs(centroid - s) / SR < 0.002, (name, s, centroid)
        # Nothing far from the click.
        assert np.abs(row[: max(0, lo - cfg.audio.n_fft)]).max(initial=0) < 0.01


def test_vocoder_checks_frames_against_length(quickstart):
    vocoder = audio.GriffinLimVocoder(quickstart.audio, SR)
    mel = np.full((10, quickstart.audio.n_mels), audio.SILENCE, np.float32)
    assert vocoder(mel, 2_500).shape == (2_500,)
    with pytest.raises(ValueError, match="ceil"):
        vocoder(mel, 3_000)


def test_log_mel_then_vocoder_keeps_avshapes_onsets_and_pitch():
    """The ceiling of the VAE path: bounces and pitches survive log-mel -> Griffin-Lim."""
    cfg = configs.get("quickstart", ["audio.n_mels=128"])
    clips = [generator.generate(cfg, "validation", i) for i in range(6)]
    wave = np.stack([c.audio for c in clips])
    rec = audio.make_vocoder(cfg.audio, SR)(audio.log_mel(wave, cfg.audio, SR),
                                            cfg.num_samples)
    matched = total = agree = 0.0
    for clip, original, restored in zip(clips, wave, rec, strict=True):
        reference = np.unique([b["time"] for b in clip.metadata["bounces"]])
        found = audio_metrics.detect_onsets(restored, SR, cfg.audio.hop)
        score = audio_metrics.onset_f1(found, reference, 1 / cfg.data.fps)
        assert score["f1"] == 1.0, (clip.metadata["id"], found, reference)
        matched += score["matched"]
        total += len(reference)
        agree += len(reference) * audio_metrics.pitch_agreement(original, restored, reference,
                                                                SR)
    assert total > 10 and agree / total >= 0.95


# --- audio VAE -------------------------------------------------------------------------------


def test_level_strides():
    assert audio.level_strides(4, 2) == [4]
    assert audio.level_strides(4, 3) == [2, 2]
    assert audio.level_strides(4, 4) == [2, 2, 1]
    assert audio.level_strides(8, 3) == [4, 2]
    assert audio.level_strides(1, 1) == []
    with pytest.raises(ValueError, match="widths"):
        audio.level_strides(4, 1)


@pytest.mark.parametrize("frames", [132, 130])
def test_vae_shapes(quickstart, frames):
    a = dataclasses.replace(quickstart.audio, widths=(16, 32), channels=8)
    model = audio.AudioVAE(a, rngs=nnx.Rngs(0))
    mel = jnp.zeros((2, frames, a.n_mels))
    # Shapes only: abstract evaluation compiles nothing.
    mean, logvar = nnx.eval_shape(lambda m, x: m.encode(x), model, mel)
    assert mean.shape == logvar.shape == (2, 33, 8)  # ceil(frames / a_down)
    assert nnx.eval_shape(lambda m, z: m.decode(z), model, mean).shape == (2, 132, a.n_mels)
    recon, _, _ = nnx.eval_shape(lambda m, x: m(x, jax.random.key(0)), model, mel)
    assert recon.shape == (2, frames, a.n_mels)


def test_vae_latents_are_local_in_time(quickstart):
    """Latent i describes mel frames [4i, 4i + 4) plus a little context, nothing far away."""
    a = dataclasses.replace(quickstart.audio, widths=(16, 32), channels=8)
    model = audio.AudioVAE(a, rngs=nnx.Rngs(0))
    mel = jax.random.normal(jax.random.key(1), (1, 132, a.n_mels))
    base = model.encode(mel)[0]
    moved = model.encode(mel.at[:, 60].add(1.0))[0]
    changed = np.flatnonzero(np.abs(np.asarray(moved - base)).max(axis=(0, 2)) > 0)
    # Frame 60 belongs to latent 15; the encoder's receptive field reaches 4 latents aside.
    assert 15 in changed and changed.min() >= 11 and changed.max() <= 19


def test_vae_training_reduces_loss(tiny_config):
    a = dataclasses.replace(tiny_config.audio, widths=(16, 32))
    mel = audio.log_mel(np.stack([generator.generate(tiny_config, "train", i).audio
                                  for i in range(4)]), a, SR)
    model = audio.AudioVAE(a, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, key):
        grad_fn = nnx.value_and_grad(audio.loss_fn, has_aux=True)
        (_, metrics), grads = grad_fn(model, mel, key, a.kl_weight)
        optimizer.update(model, grads)
        return metrics

    first = step(model, optimizer, jax.random.key(0))
    assert set(first) >= {"loss", "recon", "kl", "mel_l1"}
    for i in range(1, 20):
        last = step(model, optimizer, jax.random.key(i))
    assert float(last["loss"]) < 0.5 * float(first["loss"])
    assert float(last["mel_l1"]) < float(first["mel_l1"])


# --- metrics ---------------------------------------------------------------------------------


def test_onset_f1_matching():
    ref = [0.5, 1.0, 1.5]
    perfect = audio_metrics.onset_f1([0.51, 0.99, 1.5], ref, 0.0625)
    assert (perfect["precision"], perfect["recall"], perfect["f1"]) == (1.0, 1.0, 1.0)
    missed = audio_metrics.onset_f1([0.5, 1.5], ref, 0.0625)
    assert missed["precision"] == 1.0 and missed["recall"] == pytest.approx(2 / 3)
    assert missed["f1"] == pytest.approx(0.8)
    extra = audio_metrics.onset_f1([0.2, 0.5, 1.0, 1.5], ref, 0.0625)
    assert extra["precision"] == 0.75 and extra["recall"] == 1.0
    # Exactly at the tolerance matches; just beyond it does not.
    assert audio_metrics.onset_f1([1.0625], [1.0], 0.0625)["matched"] == 1
    assert audio_metrics.onset_f1([1.0626], [1.0], 0.0625)["matched"] == 0
    assert audio_metrics.onset_f1([0.9374], [1.0], 0.0625)["matched"] == 0


def test_onset_f1_is_one_to_one():
    # Two predictions near one reference: one of them is a false positive.
    double = audio_metrics.onset_f1([0.98, 1.02], [1.0], 0.0625)
    assert (double["matched"], double["precision"], double["recall"]) == (1, 0.5, 1.0)
    # One prediction between two references: it matches one of them only.
    between = audio_metrics.onset_f1([1.03], [1.0, 1.06], 0.0625)
    assert (between["matched"], between["recall"]) == (1, 0.5)
    # Nearest-first matching would give 1.04 to 1.0 and leave 1.1 unmatched; this finds both.
    assert audio_metrics.onset_f1([0.95, 1.04], [1.0, 1.1], 0.0625)["matched"] == 2
    assert audio_metrics.onset_f1([1.05, 1.07], [1.0, 1.06], 0.0625)["matched"] == 2
    empty = audio_metrics.onset_f1([], [], 0.0625)
    assert (empty["precision"], empty["recall"], empty["f1"]) == (1.0, 1.0, 1.0)
    assert audio_metrics.onset_f1([], [1.0], 0.0625)["f1"] == 0.0


@pytest.mark.parametrize("waveform", ["sine", "square", "triangle"])
@pytest.mark.parametrize("pitch", [330.0, 494.0, 880.0])
def test_pitch_at_finds_the_fundamental(waveform, pitch):
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.002, SR).astype(np.float32)
    start = 5_000
    burst = generator.tone(waveform, pitch, 960, SR)
    wave[start:start + len(burst)] += burst
    assert audio_metrics.pitch_at(wave, SR, start / SR) == pytest.approx(pitch, rel=0.01)


def test_pitch_at_silence_is_nan():
    assert np.isnan(audio_metrics.pitch_at(np.zeros(SR, np.float32), SR, 0.5))


def test_pitch_agreement():
    times = np.array([0.25, 0.5, 0.75])
    ref = np.zeros(SR, np.float32)
    up = np.zeros(SR, np.float32)
    for t, pitch in zip(times, [330.0, 494.0, 587.0], strict=True):
        s = round(t * SR)
        ref[s:s + 960] += generator.tone("square", pitch, 960, SR)
        # The last tone two semitones sharp: outside the 1-semitone tolerance.
        shift = 2 ** (2 / 12) if t == 0.75 else 2 ** (0.5 / 12)
        up[s:s + 960] += generator.tone("square", pitch * shift, 960, SR)
    assert audio_metrics.pitch_agreement(ref, ref, times, SR) == 1.0
    assert audio_metrics.pitch_agreement(ref, up, times, SR) == pytest.approx(2 / 3)
    assert np.isnan(audio_metrics.pitch_agreement(ref, ref, [], SR))


def test_detect_onsets_finds_avshapes_bounces(quickstart):
    """On clean clips every bounce time (two objects on one frame are one onset) is found."""
    for i in range(6):
        clip = generator.generate(quickstart, "validation", i)
        reference = np.unique([b["time"] for b in clip.metadata["bounces"]])
        found = audio_metrics.detect_onsets(clip.audio, SR, quickstart.audio.hop)
        score = audio_metrics.onset_f1(found, reference, 1 / quickstart.data.fps)
        assert score["f1"] == 1.0, (i, found, reference)
        # Onsets land within a mel hop of the bounce, not just within the tolerance.
        assert np.all(np.abs(found - reference[np.argmin(
            np.abs(found[:, None] - reference[None]), axis=1)]) <= quickstart.audio.hop / SR)


def test_spectral_distances():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, 8_000).astype(np.float32)
    assert audio_metrics.log_spectral_distance(noise, noise, 512, 128) == 0.0
    # Half the amplitude is a quarter of the power everywhere: 10 log10(4) dB.
    assert audio_metrics.log_spectral_distance(noise, noise / 2, 512, 128) == pytest.approx(
        10 * np.log10(4), abs=1e-3)
    a = np.zeros((3, 4), np.float32)
    assert audio_metrics.mel_l1(a, a + 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        audio_metrics.mel_l1(a, a[:2])


def test_griffin_lim_stream_continues_a_tone_across_calls(quickstart):
    ac, sr = quickstart.audio, quickstart.data.sample_rate
    t = np.arange(sr * 3) / sr
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (t < 1.5)
            + 0.3 * np.sin(2 * np.pi * 660 * t) * (t >= 1.5)).astype(np.float32)
    mel = audio.log_mel(wave, ac, sr)

    def streamed(chunk):
        s = audio.GriffinLimStream(ac, sr, seed=1)
        parts = [s(mel[i:i + chunk]) for i in range(0, len(mel), chunk)] + [s.flush()]
        return np.concatenate(parts)

    out = streamed(64)
    assert len(out) == len(mel) * ac.hop  # every frame's samples, the held ones at the flush
    np.testing.assert_array_equal(out, streamed(64))
    offline = audio.GriffinLimVocoder(ac, sr)(mel, len(wave))

    def mel_error(w):
        return np.abs(audio.log_mel(w[:len(wave)], ac, sr) - mel).mean()

    # in calls of 64 frames (1 s) the sound is about as faithful as the whole clip made at
    # once (measured: a mel error 1.24x the offline vocoder's)
    assert mel_error(out) < 1.5 * mel_error(offline)
    # and no click where calls meet: the sample steps there are ordinary ones
    steps = np.abs(np.diff(out[:len(wave)]))
    meet = np.arange(64 * ac.hop, len(steps), 64 * ac.hop)
    assert steps[np.concatenate([meet - 1, meet])].max() < np.percentile(steps, 99)
