"""`o1 data encode`: the latent cache the transformer trains on.

The frozen tokenizers run once over every split of a clip dataset; `<workdir>/latents/` then
holds, per clip (array_record, plain tensors):

  id, caption, metadata   as in the clip dataset (metadata keeps what evaluation needs)
  text_ids       int32   [L]  bos + caption pieces + eos
  every_text_ids int32   [N]  the clip's caption in each of `text.languages`, in that order,
                              one after another (each bos .. eos); empty when the clip has a
                              caption in one language only (`datasets.every_caption`)
  video_latents  float32 [t, h, w, C]  normalized per channel
  audio_latents  float32 [a, C_a]      normalized per channel
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from o1.config import Config
from o1.tokenizers import bundle
from o1.train import datasets

BATCH = 16  # clips per encoder call


def latent_features(config: Config) -> tfds.features.FeaturesDict:
    s = config.video_vae.s_down
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "caption": tfds.features.Text(),
        "metadata": tfds.features.Text(),
        "text_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "every_text_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "video_latents": tfds.features.Tensor(
            shape=(config.num_video_latents, config.data.height // s, config.data.width // s,
                   config.video_vae.channels), dtype=np.float32),
        "audio_latents": tfds.features.Tensor(
            shape=(config.num_audio_latents, config.audio.channels), dtype=np.float32),
    })


class Latents(tfds.core.GeneratorBasedBuilder):
    """Normalized video and audio latents and caption ids of a clip dataset."""

    VERSION = tfds.core.Version("1.0.0")

    def __init__(self, *, tokenizers: bundle.Tokenizers, data: str | os.PathLike, **kwargs):
        self._tok = tokenizers
        self._data = data
        super().__init__(file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self._tok.config
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__, features=latent_features(config),
            metadata=tfds.core.MetadataDict(o1_config=json.loads(config.to_json()),
                                            source=str(pathlib.Path(self._data).resolve())))

    def _split_generators(self, dl_manager):
        splits = datasets.load_builder(self._data).info.splits
        return {name: self._generate_examples(name) for name in sorted(splits.keys())}

    def _generate_examples(self, split: str):
        source = datasets.data_source(self._data, split)
        tok = self._tok
        for start in tqdm(range(0, len(source), BATCH), desc=f"encode {split}", unit="batch"):
            examples = [datasets.decode(source[i])
                        for i in range(start, min(start + BATCH, len(source)))]
            video = tok.encode_video(np.stack([ex["video"] for ex in examples]))
            audio = tok.encode_audio(np.stack([ex["audio"] for ex in examples]))
            for ex, v, a in zip(examples, video, audio, strict=True):
                yield ex["id"], {
                    "id": ex["id"], "caption": ex["caption"],
                    "metadata": json.dumps(ex["metadata"]),
                    "text_ids": np.asarray(tok.text.encode(
                        ex["caption"], language=datasets.caption_language(ex, tok.config)),
                        np.int32),
                    "every_text_ids": every_text_ids(tok, ex),
                    "video_latents": v, "audio_latents": a,
                }


def every_text_ids(tok: bundle.Tokenizers, example: dict) -> np.ndarray:
    """`every_text_ids` of a decoded clip (see the module docstring)."""
    pairs = datasets.every_caption(example, tok.config)
    if len(pairs) == 1:
        return np.zeros(0, np.int32)
    return np.concatenate([np.asarray(tok.text.encode(text, language=lang), np.int32)
                           for lang, text in pairs])


def encode_dataset(workdir: str | os.PathLike, data: str | os.PathLike,
                   overwrite: bool = False) -> pathlib.Path:
    """Writes `<workdir>/latents/` from the clip dataset at `data`; returns its path."""
    tokenizers = bundle.Tokenizers(workdir)
    built = datasets.load_config(data)
    config = tokenizers.config
    if (built.num_frames, built.data.height, built.data.width, built.num_samples) != (
            config.num_frames, config.data.height, config.data.width, config.num_samples):
        raise datasets.DatasetError(
            f"{data} holds {built.num_frames}x{built.data.height}x{built.data.width} clips with "
            f"{built.num_samples} samples, but the tokenizers in {workdir} were trained for "
            f"{config.num_frames}x{config.data.height}x{config.data.width} and "
            f"{config.num_samples}")
    return datasets.build(
        lambda d: Latents(tokenizers=tokenizers, data=data, data_dir=d),
        pathlib.Path(workdir) / "latents", overwrite)
