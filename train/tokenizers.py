"""`o1 tokenizers train`: the text tokenizer, the video VAE and the audio VAE of a workdir.

Stages run in order and each is skipped when already done, so running the command again
after an interruption picks up where it stopped:

  1. text:  SentencePiece on the train captions -> `text_tokenizer.model`
  2. video: the causal video VAE -> `video_vae/checkpoints/`
  3. audio: the mel VAE -> `audio_vae/checkpoints/`
  4. stats: per-channel mean/std of both VAEs' latents on train clips
            -> `{video,audio}_vae/latent_stats.json`
"""

from __future__ import annotations

import logging
import os
import pathlib
import time

import jax
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from o1 import config as config_lib
from o1.config import Config, ConfigError
from o1.tokenizers import audio as audio_lib
from o1.tokenizers import bundle
from o1.tokenizers import text as text_lib
from o1.tokenizers import video_vae as video_lib
from o1.train import datasets, loader, loop, optim

log = logging.getLogger(__name__)

# Geometry the tokenizers are trained for; it must match the dataset's.
GEOMETRY = ("height", "width", "fps", "seconds", "sample_rate")
# Top-level config keys the tokenizer stage depends on.
TOKENIZER_KEYS = ("seed", "data", "text", "video_vae", "audio", "tokenizer_train")


def prepare_workdir(workdir: str | os.PathLike, config: Config, data: str | os.PathLike
                    ) -> Config:
    """Checks `config` against the dataset and the workdir, and writes `config.json`.

    Raises:
      ConfigError: the dataset was built with another clip geometry, or the workdir already
        holds a run with a different config.
    """
    built = datasets.load_config(data)
    wrong = [f"data.{k}: dataset {getattr(built.data, k)}, config {getattr(config.data, k)}"
             for k in GEOMETRY if getattr(built.data, k) != getattr(config.data, k)]
    if wrong:
        raise ConfigError(f"{data} was built with another clip geometry ({'; '.join(wrong)}); "
                          f"use --config {built.name} or rebuild the dataset")
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = bundle.config_path(workdir)
    if path.exists():
        # Only what the tokenizers depend on; `o1 train` checks the transformer's sections.
        diffs = config_lib.differences(config_lib.load(path), config, TOKENIZER_KEYS)
        if diffs:
            raise ConfigError(f"{workdir} holds a run with another config ({'; '.join(diffs)});"
                              " resume with the same config or use a new --workdir")
    else:
        tmp = path.with_name(".config.json.tmp")
        tmp.write_text(config.to_json())
        os.replace(tmp, path)
    return config


def _train_text(workdir: pathlib.Path, config: Config, data) -> None:
    out, words = workdir / text_lib.FILENAME, workdir / text_lib.WORDS_FILENAME
    if out.exists() and words.exists():
        return
    source = datasets.data_source(data, "train")
    records = [source[i] for i in tqdm(range(len(source)), desc="captions", unit="clip",
                                       leave=False)]
    pairs = [pair for r in records for pair in datasets.every_caption(r, config)]
    languages = [lang for lang, _ in pairs]
    captions = [text for _, text in pairs]
    if out.exists():  # a tokenizer trained before its word list was kept
        text_lib.write_words(captions, words)
        return
    tok = text_lib.train(captions, config.text.vocab_size, config.text.model_type, out,
                         languages)
    log.info("text tokenizer: %d pieces from %d captions", tok.vocab_size, len(captions))


def _optimizer(section) -> optax.GradientTransformation:
    """Adam (clipped to norm 1) or Muon (unclipped), b2 0.99, on a warm-up of at most a tenth
    of the steps and a cosine to 5% of the peak."""
    warmup = max(1, min(section.warmup_steps, section.steps // 10))

    def schedule(peak):
        return optim.schedule(peak, section.steps, warmup, 0.05)

    if section.optimizer == "muon":
        return optim.make_optimizer("muon", schedule(section.learning_rate), b2=0.99,
                                    adam_learning_rate=schedule(section.adam_learning_rate))
    return optim.make_optimizer("adamw", schedule(section.learning_rate), b2=0.99, clip=1.0)


def _fit(name: str, workdir: pathlib.Path, data, config: Config, section, model: nnx.Module,
         loss_fn, prepare, stop: loop.StopRequest) -> None:
    """Trains (or resumes) one VAE: `section` (video_vae or audio) holds its steps, batch size
    and optimizer; checkpoints go to `<workdir>/<name>/checkpoints`."""
    run = config.tokenizer_train
    graphdef, params = nnx.split(model)
    tx = _optimizer(section)
    state = loop.initial_state(params, tx, run.seed)
    batches = loader.make_loader(data, "train", batch_size=section.batch_size, seed=run.seed,
                                 worker_count=config.loader.worker_count)
    loop.fit(loop.Stage(
        name=name, workdir=workdir, checkpoints=workdir / name / "checkpoints",
        steps=section.steps, log_every=run.log_every, checkpoint_every=run.checkpoint_every,
        state=state, step=loop.compile_step(loop.loss_step(graphdef, tx, loss_fn), state),
        loader=batches, prepare=prepare), stop)


def _video_loss(config: Config):
    """The VAE loss on a random window of `train_crop` latent frames of every clip."""
    v = config.video_vae
    frames = 1 + v.t_down * (v.train_crop - 1)

    def loss(model, video_bthwc, key):
        if v.train_crop and frames < video_bthwc.shape[1]:
            crop_key, key = jax.random.split(key)
            starts = jax.random.randint(crop_key, (video_bthwc.shape[0],), 0,
                                        video_bthwc.shape[1] - frames + 1)
            video_bthwc = jax.vmap(
                lambda clip, start: jax.lax.dynamic_slice_in_dim(clip, start, frames, 0)
            )(video_bthwc, starts)
        return video_lib.loss_fn(model, video_bthwc, key, v.kl_weight)

    return loss


def _train_video(workdir: pathlib.Path, config: Config, data, stop) -> None:
    _fit("video_vae", workdir, data, config, config.video_vae,
         bundle.new_video_vae(config, config.tokenizer_train.seed), _video_loss(config),
         lambda batch: bundle.video_pixels(batch["video"]), stop)


def _train_audio(workdir: pathlib.Path, config: Config, data, stop) -> None:
    a = config.audio
    _fit("audio_vae", workdir, data, config, a,
         audio_lib.AudioVAE(a, rngs=nnx.Rngs(config.tokenizer_train.seed)),
         lambda m, x, key: audio_lib.loss_fn(m, x, key, a.kl_weight),
         lambda batch: audio_lib.log_mel(batch["audio"], a, config.data.sample_rate), stop)


def _measure_stats(workdir: pathlib.Path, config: Config, data) -> None:
    video_path = workdir / "video_vae" / bundle.STATS_FILE
    audio_path = workdir / "audio_vae" / bundle.STATS_FILE
    if video_path.exists() and audio_path.exists():
        return
    c = config
    video_model = bundle.new_video_vae(c, 0)
    bundle.restore_vae(workdir / "video_vae" / "checkpoints", video_model)
    audio_model = audio_lib.AudioVAE(c.audio, rngs=nnx.Rngs(0))
    bundle.restore_vae(workdir / "audio_vae" / "checkpoints", audio_model)
    encode_video = nnx.jit(lambda m, x: m.encode(x)[0])
    encode_audio = nnx.jit(lambda m, x: m.encode(x)[0])
    source = datasets.data_source(data, "train")
    count = min(len(source), c.tokenizer_train.stats_clips)
    video_latents, audio_latents = [], []
    batch = 8
    for start in tqdm(range(0, count, batch), desc="latent stats", unit="batch", leave=False):
        examples = [source[i] for i in range(start, min(start + batch, count))]
        video = np.stack([ex["video"] for ex in examples])
        wave = np.stack([ex["audio"] for ex in examples])
        video_latents.append(np.asarray(encode_video(video_model, bundle.video_pixels(video))))
        mel = audio_lib.log_mel(wave, c.audio, c.data.sample_rate)
        audio_latents.append(np.asarray(encode_audio(audio_model, mel)))
    bundle.LatentStats.measure(np.concatenate(video_latents)).save(video_path)
    bundle.LatentStats.measure(np.concatenate(audio_latents)).save(audio_path)


def train_tokenizers(workdir: str | os.PathLike, data: str | os.PathLike, config: Config
                     ) -> dict[str, float]:
    """Runs (or resumes) every stage; returns the seconds each stage took in this call.

    Raises:
      loop.Preempted: SIGTERM/SIGINT arrived; the running stage saved a checkpoint.
    """
    workdir = pathlib.Path(workdir)
    prepare_workdir(workdir, config, data)
    seconds = {}
    with loop.StopRequest() as stop:
        for name, stage in (("text", lambda: _train_text(workdir, config, data)),
                            ("video_vae", lambda: _train_video(workdir, config, data, stop)),
                            ("audio_vae", lambda: _train_audio(workdir, config, data, stop)),
                            ("latent_stats", lambda: _measure_stats(workdir, config, data))):
            start = time.perf_counter()
            stage()
            jax.effects_barrier()
            seconds[name] = time.perf_counter() - start
    return seconds
