"""The tokenizer stage end to end on tiny data: train, resume, cache latents, evaluate."""

import json
import os
import signal
import unicodedata

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from o1 import checkpoint, configs
from o1.cli import main
from o1.config import ConfigError
from o1.eval import tokenizers as tok_eval
from o1.tokenizers import bundle
from o1.train import datasets, latents, loop
from o1.train import tokenizers as tok_train
from o1.train.metrics import MetricWriter


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dataset):
    workdir = tmp_path_factory.mktemp("run")
    config = configs.get("tiny")
    seconds = tok_train.train_tokenizers(workdir, tiny_dataset, config)
    return workdir, config, seconds


def test_training_writes_every_artifact(trained):
    workdir, config, seconds = trained
    assert set(seconds) == {"text", "video_vae", "audio_vae", "latent_stats"}
    assert (workdir / "text_tokenizer.model").is_file()
    assert json.loads((workdir / "config.json").read_text())["name"] == "tiny"
    for vae in ("video_vae", "audio_vae"):
        steps = getattr(config, vae if vae == "video_vae" else "audio").steps
        assert checkpoint.committed_steps(workdir / vae / "checkpoints")[-1] == steps
        stats = json.loads((workdir / vae / "latent_stats.json").read_text())
        assert len(stats["mean"]) == len(stats["std"]) > 0
    lines = [json.loads(s) for s in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {line["stage"] for line in lines} == {"video_vae", "audio_vae"}
    assert all(np.isfinite(line["loss"]) for line in lines)
    assert list((workdir / "tb").glob("events.out.tfevents.*"))


def test_second_run_skips_finished_stages(trained, tiny_dataset):
    workdir, config, _ = trained
    before = (workdir / "metrics.jsonl").read_text()
    tok_train.train_tokenizers(workdir, tiny_dataset, config)
    assert (workdir / "metrics.jsonl").read_text() == before


def test_latent_cache_has_every_split_normalized(trained, tiny_dataset):
    workdir, config, _ = trained
    out = latents.encode_dataset(workdir, tiny_dataset)
    assert out == workdir / "latents"
    built = datasets.load_builder(out)
    assert {k: v.num_examples for k, v in built.info.splits.items()} == {
        k: v.num_examples for k, v in datasets.load_builder(tiny_dataset).info.splits.items()}
    source = datasets.data_source(out, "train")
    examples = [source[i] for i in range(len(source))]
    video = np.stack([ex["video_latents"] for ex in examples])
    audio = np.stack([ex["audio_latents"] for ex in examples])
    s = config.video_vae.s_down
    assert video.shape[1:] == (config.num_video_latents, 32 // s, 32 // s,
                               config.video_vae.channels)
    assert audio.shape[1:] == (config.num_audio_latents, config.audio.channels)
    # The statistics were measured on these very clips, so normalization is exact here.
    for z in (video, audio):
        flat = z.reshape(-1, z.shape[-1])
        np.testing.assert_allclose(flat.mean(0), 0, atol=1e-3)
        np.testing.assert_allclose(flat.std(0), 1, atol=1e-3)
    ids = examples[0]["text_ids"]
    assert ids[0] == 1 and ids[-1] == 2 and ids.dtype == np.int32


def test_eval_report_and_side_by_side_videos(trained, tiny_dataset):
    workdir, config, _ = trained
    report = tok_eval.evaluate(workdir, tiny_dataset, "validation")
    for key in ("video_psnr", "video_ssim", "audio_mel_l1", "audio_lsd", "audio_onset_f1",
                "audio_pitch_agreement", "encode_clips_per_s", "decode_clips_per_s"):
        assert np.isfinite(report[key]), key
    assert report["clips"] == config.data.num_val
    # Vocoding the true mel keeps the bounces: the ceiling the VAE is measured against.
    assert report["vocoder_onset_f1"] > 0.8
    saved = json.loads((workdir / "eval" / "tokenizers" / "report.json").read_text())
    assert saved == pytest.approx(report)
    assert len(list((workdir / "eval" / "tokenizers").glob("*.mp4"))) == config.data.num_val
    assert "video PSNR" in tok_eval.format_report(report)


def _params(workdir, config):
    model = bundle.new_video_vae(config, 0)
    bundle.restore_vae(workdir / "video_vae" / "checkpoints", model)
    return jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_resume_after_sigterm_matches_an_uninterrupted_run(tmp_path, tiny_dataset,
                                                           monkeypatch):
    config = configs.get("tiny", ["video_vae.steps=6", "audio.steps=2",
                                  "tokenizer_train.log_every=1"])
    tok_train.train_tokenizers(tmp_path / "straight", tiny_dataset, config)

    real_write = MetricWriter.write

    def write_then_sigterm(self, step, scalars):
        real_write(self, step, scalars)
        if self._stage == "video_vae" and step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(MetricWriter, "write", write_then_sigterm)
    # A step's metrics are read once the next step is on its way, so the signal sent while
    # step 3's are written stops the run after step 4.
    with pytest.raises(loop.Preempted, match="step 4/6"):
        tok_train.train_tokenizers(tmp_path / "resumed", tiny_dataset, config)
    ckpt = tmp_path / "resumed" / "video_vae" / "checkpoints"
    assert checkpoint.committed_steps(ckpt)[-1] == 4
    monkeypatch.setattr(MetricWriter, "write", real_write)
    tok_train.train_tokenizers(tmp_path / "resumed", tiny_dataset, config)
    for a, b in zip(_params(tmp_path / "straight", config), _params(tmp_path / "resumed", config),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_restore_vae_reads_checkpoints_written_before_the_shared_loop(trained, tmp_path):
    """Those held `{model, opt}` rather than `{params, opt, step, key}`; and a checkpoint
    without what is asked for is an error, never the target handed back."""
    workdir, config, _ = trained
    model = bundle.new_video_vae(config, 0)
    bundle.restore_vae(workdir / "video_vae" / "checkpoints", model)
    pure = nnx.to_pure_dict(nnx.state(model))
    with checkpoint.manager(tmp_path / "old") as m:
        m.save(5, args=ocp.args.Composite(state=ocp.args.StandardSave(
            {"model": pure, "opt": {"count": jnp.zeros((), jnp.int32)}})))
    other = bundle.new_video_vae(config, 1)
    assert bundle.restore_vae(tmp_path / "old", other) == 5
    for a, b in zip(jax.tree.leaves(pure), jax.tree.leaves(nnx.to_pure_dict(nnx.state(other))),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(KeyError, match=r"checkpoint 5 .* has no \['params'\]"):
        checkpoint.restore(tmp_path / "old", {"params": checkpoint.abstract(jnp.zeros(2))})


def test_an_unfinished_run_of_the_earlier_format_is_refused_clearly(tiny_dataset, tmp_path):
    """An interrupted VAE run saved as `{model, opt}` cannot resume in the shared loop: one
    error names the folder and what to do, and nothing in it is touched."""
    new = tmp_path / "run"
    ckpt = new / "video_vae" / "checkpoints"
    with checkpoint.manager(ckpt) as m:
        m.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(
            {"model": {"w": jnp.zeros(2)}, "opt": {"count": jnp.zeros((), jnp.int32)}})))
    before = sorted(p.name for p in ckpt.iterdir())
    with pytest.raises(ConfigError, match="earlier version of o1 .* move that folder away"):
        tok_train.train_tokenizers(new, tiny_dataset, configs.get(
            "tiny", ["video_vae.steps=2", "audio.steps=2"]))
    assert sorted(p.name for p in ckpt.iterdir()) == before


def _optimize(tx, params, steps):
    """`params` after `steps` jitted updates with seeded random gradients."""
    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for i in range(steps):
        rng = np.random.default_rng(i)
        params, state = step(params, state, jax.tree.map(
            lambda x, rng=rng: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params))
    return jax.device_get(params)


def test_vae_adam_computes_the_floats_of_optax_adam():
    """The shared factory gives the VAEs AdamW without decay; the VAEs were tuned with
    optax.adam (clip 1, b2 0.99), and the two must agree to the bit."""
    a = configs.get("tiny", ["audio.steps=20"]).audio
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
              "b": jnp.zeros(8, jnp.float32)}
    warmup = max(1, min(a.warmup_steps, a.steps // 10))
    adam = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(
        optax.warmup_cosine_decay_schedule(0.0, a.learning_rate, warmup, a.steps,
                                           a.learning_rate * 0.05), b2=0.99))
    ours = _optimize(tok_train._optimizer(a), params, a.steps)
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(_optimize(adam, params, a.steps)),
                    strict=True):
        assert x.tobytes() == y.tobytes()


def test_workdir_and_dataset_mismatches_are_refused(trained, tiny_dataset, tmp_path):
    workdir, config, _ = trained
    with pytest.raises(ConfigError, match=r"video_vae.steps: \d+ -> 7"):
        tok_train.prepare_workdir(workdir, configs.get("tiny", ["video_vae.steps=7"]),
                                  tiny_dataset)
    with pytest.raises(ConfigError, match="data.height: dataset 32, config 64"):
        tok_train.prepare_workdir(tmp_path / "w", configs.get(
            "quickstart", ["data.height=64", "data.width=64"]), tiny_dataset)
    assert main(["data", "encode", "--workdir", str(tmp_path / "none"),
                 "--data", str(tiny_dataset)]) == 2


def test_captions_in_several_languages_train_one_tagged_text_tokenizer(tmp_path):
    from o1.tokenizers import text as text_lib

    config = configs.get("tiny", ["text.languages=[en,it,pt,zh]", "data.num_train=40",
                                  "data.num_val=2", "data.num_test=2", "text.vocab_size=400"])
    data = datasets.build_avshapes(config, tmp_path / "ds")
    tok_train._train_text(tmp_path, config, data)
    tok = text_lib.TextTokenizer(tmp_path / text_lib.FILENAME)
    assert tok.languages == ("en", "it", "pt", "zh")
    source = datasets.data_source(data, "train")
    for i in range(len(source)):
        record = datasets.decode(source[i])
        language = datasets.caption_language(record, config)
        assert language == record["metadata"]["language"]
        ids = tok.encode(record["caption"], language=language)
        assert ids[1] == tok.tag_id(language) and text_lib.UNK_ID not in ids
        assert tok.detect(record["caption"]) == language
        # SentencePiece writes text in NFKC form: a full-width "：" comes back as ":".
        assert tok.decode(ids) == unicodedata.normalize("NFKC", record["caption"])
        assert tok.unknown_words(record["caption"], language) == []


def test_a_clip_captioned_in_every_language_is_read_in_one_of_them_a_visit(tmp_path):
    from o1.sequence import SequenceBuilder
    from o1.tokenizers import text as text_lib

    overrides = ["text.languages=[en,it,pt,zh]", "data.num_train=24", "data.num_val=2",
                 "data.num_test=2", "text.vocab_size=400", "sequence.max_text_len=40"]
    config = configs.get("tiny", overrides)
    data = datasets.build_avshapes(config, tmp_path / "ds")
    tok_train._train_text(tmp_path, config, data)
    text = text_lib.TextTokenizer(tmp_path / text_lib.FILENAME)
    tok = type("Tokenizers", (), {"config": config, "text": text})()
    record = datasets.decode(datasets.data_source(data, "train")[0])
    every = record["metadata"]["captions"]
    # The tokenizer learned every language's caption of every clip, not only the clip's own.
    for lang, caption in every.items():
        assert text_lib.UNK_ID not in text.encode(caption, language=lang)
    ids = latents.every_text_ids(tok, record)
    example = {"id": record["id"], "text_ids": text.encode(record["caption"],
                                                           language=record["metadata"]["language"]),
               "every_text_ids": ids,
               "video_latents": np.zeros((config.num_video_latents, *config.latent_grid,
                                          config.video_vae.channels), np.float32),
               "audio_latents": np.zeros((config.num_audio_latents, config.audio.channels),
                                         np.float32)}
    builder = SequenceBuilder(config)
    prepared = builder.prepare(example)
    want = [builder.cut_caption(np.asarray(text.encode(every[lang], language=lang)))
            for lang in config.text.languages]
    assert len(prepared["captions"]) == 4
    for got, expected in zip(prepared["captions"], want, strict=True):
        np.testing.assert_array_equal(got, expected)
    rng = np.random.default_rng(0)
    read = [builder.read_caption(prepared, rng)["caption"] for _ in range(400)]
    counts = [sum(np.array_equal(r, w) for r in read) for w in want]
    assert sum(counts) == 400 and min(counts) > 70  # about 100 each
    # The weights say how often each language is read; a zero weight never is.
    weighted = SequenceBuilder(configs.get("tiny", [*overrides,
                                                    "data.language_weights=[3,0,0,1]"]))
    read = [weighted.read_caption(prepared, rng)["caption"] for _ in range(400)]
    counts = [sum(np.array_equal(r, w) for r in read) for w in want]
    assert counts[1] == counts[2] == 0 and counts[0] > 2 * counts[3] > 0
    # Off, or a clip with one caption: the clip's own caption, with no draw.
    off = SequenceBuilder(configs.get("tiny", [*overrides, "data.every_language=false"]))
    assert "captions" not in off.prepare(example)
    one = builder.prepare({**example, "every_text_ids": np.zeros(0, np.int32)})
    state = rng.bit_generator.state
    assert builder.read_caption(one, rng) is one and rng.bit_generator.state == state
    with pytest.raises(ValueError, match=r"has 3 captions .* for the 4 text.languages .*"
                                         r"re-run `o1 data encode`"):
        builder.prepare({**example, "every_text_ids": np.concatenate(
            [text.encode(every[lang], language=lang) for lang in ("en", "it", "pt")])})
