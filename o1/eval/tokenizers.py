"""`o1 tokenizers eval`: how well the frozen tokenizers reconstruct held-out clips.

Video: PSNR and SSIM of decoded frames. Audio: mel L1 (normalized log-mel units) and
log-spectral distance of the waveform, onset F1 of the reconstructed waveform against the
dataset's bounce times (tolerance one video frame), and the share of onsets whose pitch
survives. The same audio numbers for log-mel -> vocoder without the VAE show what the
vocoder alone allows. Throughput is measured after compilation, on this machine.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from o1 import media
from o1.avshapes import audio_metrics
from o1.tokenizers import bundle
from o1.train import datasets

BATCH = 8
SIDE_BY_SIDE = 4  # clips written as original | reconstruction mp4s


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 images or videos."""
    mse = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean structural similarity of uint8 [..., H, W, 3] frames (Gaussian window, sigma 1.5)."""
    x = reference.astype(np.float64).reshape(-1, *reference.shape[-3:])
    y = test.astype(np.float64).reshape(-1, *test.shape[-3:])
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    # Blur only over height and width of each frame and channel.
    blur = lambda a: ndimage.gaussian_filter(a, sigma=(0, 1.5, 1.5, 0), truncate=3.5)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(index.mean())


def _bounce_times(metadata: dict) -> np.ndarray:
    return np.unique([b["time"] for b in metadata.get("bounces", [])])


def evaluate(workdir: str | os.PathLike, data: str | os.PathLike, split: str = "validation",
             num: int | None = None) -> dict:
    """Reconstructs up to `num` clips of `split`; returns the report (also saved as JSON)."""
    tok = bundle.Tokenizers(workdir)
    c = tok.config
    sr = c.data.sample_rate
    source = datasets.data_source(data, split)
    count = len(source) if num is None else min(num, len(source))
    if count == 0:
        raise datasets.DatasetError(f"split {split!r} of {data} is empty")
    out_dir = pathlib.Path(workdir) / "eval" / "tokenizers"
    out_dir.mkdir(parents=True, exist_ok=True)

    sums: dict[str, list[float]] = {k: [] for k in (
        "video_psnr", "video_ssim", "audio_mel_l1", "audio_lsd", "vocoder_lsd")}
    onsets = {"vae": [0, 0, 0], "vocoder": [0, 0, 0]}  # matched, predicted, reference
    pitch = {"vae": [], "vocoder": []}
    encode_s = decode_s = 0.0
    tolerance = 1.0 / c.data.fps
    # Compile once before timing, so throughput is the steady state.
    warm = np.stack([source[0]["video"]]), np.stack([source[0]["audio"]])
    tok.decode_video(tok.encode_video(warm[0]))
    tok.decode_audio(tok.encode_audio(warm[1]))
    for start in tqdm(range(0, count, BATCH), desc=f"eval {split}", unit="batch"):
        examples = [datasets.decode(source[i]) for i in range(start, min(start + BATCH, count))]
        video = np.stack([ex["video"] for ex in examples])
        wave = np.stack([ex["audio"] for ex in examples])
        t0 = time.perf_counter()
        video_z, audio_z = tok.encode_video(video), tok.encode_audio(wave)
        t1 = time.perf_counter()
        video_rec, audio_mel = tok.decode_video(video_z), tok.decode_mel(audio_z)
        audio_rec = tok.vocoder(audio_mel, c.num_samples)
        t2 = time.perf_counter()
        encode_s, decode_s = encode_s + t1 - t0, decode_s + t2 - t1
        mel = tok.audio_mel(wave)
        vocoded = tok.vocoder(mel, c.num_samples)
        for i, ex in enumerate(examples):
            sums["video_psnr"].append(psnr(video[i], video_rec[i]))
            sums["video_ssim"].append(ssim(video[i], video_rec[i]))
            sums["audio_mel_l1"].append(audio_metrics.mel_l1(mel[i], audio_mel[i]))
            sums["audio_lsd"].append(audio_metrics.log_spectral_distance(
                wave[i], audio_rec[i], c.audio.n_fft, c.audio.hop))
            sums["vocoder_lsd"].append(audio_metrics.log_spectral_distance(
                wave[i], vocoded[i], c.audio.n_fft, c.audio.hop))
            reference = _bounce_times(ex["metadata"])
            for name, rec in (("vae", audio_rec[i]), ("vocoder", vocoded[i])):
                found = audio_metrics.detect_onsets(rec, sr, c.audio.hop)
                score = audio_metrics.onset_f1(found, reference, tolerance)
                onsets[name][0] += score["matched"]
                onsets[name][1] += len(found)
                onsets[name][2] += len(reference)
                if len(reference):
                    pitch[name].append((audio_metrics.pitch_agreement(
                        wave[i], rec, reference, sr), len(reference)))
            if start + i < SIDE_BY_SIDE:
                media.write_mp4(out_dir / f"{ex['id']}_original_vs_reconstruction.mp4",
                                np.concatenate([video[i], video_rec[i]], axis=2), c.data.fps,
                                audio_rec[i], sr)

    def f1(matched, predicted, reference):
        precision = matched / max(predicted, 1)
        recall = matched / max(reference, 1)
        return 2 * precision * recall / max(precision + recall, 1e-12)

    def weighted(pairs):
        total = sum(n for _, n in pairs)
        return sum(v * n for v, n in pairs) / max(total, 1)

    report = {
        "split": split, "clips": count,
        **{k: float(np.mean(v)) for k, v in sums.items()},
        "audio_onset_f1": f1(*onsets["vae"]),
        "audio_onset_recall": onsets["vae"][0] / max(onsets["vae"][2], 1),
        "audio_onset_precision": onsets["vae"][0] / max(onsets["vae"][1], 1),
        "audio_pitch_agreement": weighted(pitch["vae"]),
        "vocoder_onset_f1": f1(*onsets["vocoder"]),
        "vocoder_pitch_agreement": weighted(pitch["vocoder"]),
        "reference_onsets": onsets["vae"][2],
        "encode_clips_per_s": count / encode_s,
        "decode_clips_per_s": count / decode_s,
    }
    tmp = out_dir / ".report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out_dir / "report.json")
    return report


def format_report(report: dict) -> str:
    rows = [
        ("video PSNR (dB)", "video_psnr"), ("video SSIM", "video_ssim"),
        ("audio mel L1", "audio_mel_l1"), ("audio log-spectral distance (dB)", "audio_lsd"),
        ("audio onset F1", "audio_onset_f1"), ("audio pitch agreement", "audio_pitch_agreement"),
        ("vocoder only: log-spectral distance (dB)", "vocoder_lsd"),
        ("vocoder only: onset F1", "vocoder_onset_f1"),
        ("vocoder only: pitch agreement", "vocoder_pitch_agreement"),
        ("encode (clips/s)", "encode_clips_per_s"), ("decode (clips/s)", "decode_clips_per_s"),
    ]
    lines = [f"tokenizer reconstruction, {report['clips']} {report['split']} clips, "
             f"{report['reference_onsets']} bounce onsets"]
    lines += [f"  {label:<42} {report[key]:>9.4g}" for label, key in rows]
    return "\n".join(lines)
