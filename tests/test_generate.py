"""Sampling: cached decoding == full forward at every position, greedy == argmax, top-k/top-p,
batches of ragged prompts, stop tokens, chat templates, and lm-sample on runs trained here."""

import dataclasses
import functools
import json
import os
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import chat
from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.generate import (SamplingConfig, filter_logits, generate, load_run, main,
                         sample_token)
from lm.model import decode, forward, init_cache, init_params

BASE = ModelConfig(vocab_size=32, d_model=32, n_layers=2, n_heads=4, max_seq_len=32, compute_dtype="float32")
VARIANTS = {   # between them: scan/unrolled, rope/learned/sinusoidal, MHA/GQA/MQA, pre/post norm, remat
    "llama": BASE,
    "gpt2_gqa_unrolled": dataclasses.replace(BASE, positions="learned", norm="layernorm", norm_bias=True,
                                             activation="gelu_tanh", use_bias=True, tie_embeddings=True,
                                             n_kv_heads=2, scan_layers=False),
    "post_norm_sinusoidal_mqa_remat_bf16": dataclasses.replace(
        BASE, norm_position="post", positions="sinusoidal", activation="relu", norm="layernorm",
        n_kv_heads=1, remat=True, compute_dtype="bfloat16"),      # cache in bfloat16: a looser check
}
PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [7]]   # one shape for every generate() below
GREEDY = SamplingConfig(max_new_tokens=8, temperature=0.0)
jit_forward = jax.jit(forward, static_argnums=2)
jit_init = jax.jit(init_params, static_argnums=0)
jit_filter = jax.jit(filter_logits)
jit_sample = jax.jit(sample_token)


def rel_err(got, want):
    return float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))


@pytest.fixture(scope="module")
def base_params():
    return jit_init(BASE, jax.random.key(0))


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def cached_and_full(params, seqs_BxT, lengths: tuple[int, ...], width: int, cfg):
    """Row b's first lengths[b] tokens, left-padded to `width`, prefill a cache; then the next
    T - max(lengths) tokens of each row go in one per step. Returns (prefill logits [B, width, V],
    step logits [B, steps, V], logits of one forward pass over seqs_BxT [B, T, V], final index)."""
    b, t = seqs_BxT.shape
    tokens, positions = np.zeros((b, width), np.int32), np.full((b, width), -1, np.int32)
    for i, n in enumerate(lengths):
        positions[i, width - n:] = np.arange(n)
    prompt = jnp.where(positions >= 0, jnp.take_along_axis(seqs_BxT, np.maximum(positions, 0), axis=1), 0)
    first, cache = decode(params, prompt, positions, init_cache(cfg, b, width + t), cfg)
    lengths_B = jnp.asarray(lengths)

    def step(cache, j):
        pos_B = lengths_B + j
        tok_B = jnp.take_along_axis(seqs_BxT, pos_B[:, None], axis=1)
        logits, cache = decode(params, tok_B, pos_B[:, None], cache, cfg)
        return cache, logits[:, 0]

    cache, rest = jax.lax.scan(step, cache, jnp.arange(t - max(lengths)))
    return first, rest.transpose(1, 0, 2), forward(params, seqs_BxT, cfg), cache["index"]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_cached_decoding_matches_forward_at_every_position(name):
    """A ragged batch (prompts of 5 and 2 tokens, left-padded to 8), prefilled, then one token per
    step: every row's logits at every position equal its own full forward pass."""
    cfg, lengths, width, t = VARIANTS[name], (5, 2), 8, 14
    params = jit_init(cfg, jax.random.key(0))
    seqs = np.random.default_rng(1).integers(0, cfg.vocab_size, (2, t)).astype(np.int32)
    first, rest, want, index = cached_and_full(params, seqs, lengths, width, cfg)
    assert int(index) == width + t - max(lengths)
    tol = 2e-2 if cfg.compute_dtype == "bfloat16" else 1e-5
    for b, n in enumerate(lengths):
        got = jnp.concatenate([first[b, width - n:], rest[b]])          # positions 0 .. n + steps - 1
        assert rel_err(got, want[b, :len(got)]) <= tol, (b, rel_err(got, want[b, :len(got)]))


@pytest.fixture(scope="module")
def naive_greedy(base_params):
    """Greedy continuations of PROMPTS by full forward passes, one prompt at a time."""
    out = []
    for prompt in PROMPTS:
        seq = np.zeros((1, BASE.max_seq_len), np.int32)
        seq[0, :len(prompt)] = prompt
        for t in range(len(prompt), len(prompt) + GREEDY.max_new_tokens):
            seq[0, t] = int(jnp.argmax(jit_forward(base_params, seq, BASE)[0, t - 1]))
        out.append(seq[0, len(prompt):len(prompt) + GREEDY.max_new_tokens].tolist())
    return out


def test_temperature_zero_is_argmax_and_batches_match_single_prompts(base_params, naive_greedy):
    batch = generate(base_params, BASE, PROMPTS, GREEDY)
    assert batch.tokens == naive_greedy and batch.finish == ["length"] * 3
    assert generate(base_params, BASE, PROMPTS, GREEDY, use_cache=False) == batch
    # The limit temperature -> 0, and top-k = 1, are argmax too.
    for limit in (dataclasses.replace(GREEDY, temperature=1e-5, seed=3),
                  dataclasses.replace(GREEDY, temperature=5.0, top_k=1, seed=4)):
        assert generate(base_params, BASE, PROMPTS, limit) == batch


def test_sample_token_at_tiny_temperature_is_argmax():
    logits = jax.random.normal(jax.random.key(0), (64, 50)) * 3
    argmax = jnp.argmax(logits, -1)
    for t in (0.0, 1e-4):
        got = jit_sample(logits, jax.random.key(1), jnp.float32(t), jnp.int32(0), jnp.float32(1.0))
        np.testing.assert_array_equal(got, argmax)


def test_top_k_and_top_p_keep_the_right_tokens():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = jnp.log(jnp.asarray(probs))[None]

    def kept(k, p):
        out = jit_filter(logits, jnp.float32(1.0), jnp.int32(k), jnp.float32(p))[0]
        return set(np.flatnonzero(np.isfinite(np.asarray(out))).tolist())

    assert kept(0, 1.0) == {0, 1, 2, 3}
    assert kept(2, 1.0) == {0, 1}
    assert kept(0, 0.5) == {0}                 # 0.5 reaches 0.5
    assert kept(0, 0.7) == kept(0, 0.8) == {0, 1}
    assert kept(0, 0.81) == {0, 1, 2}
    assert kept(1, 0.99) == {0}
    assert kept(0, 1e-9) == {0}


def test_draws_follow_the_filtered_distribution():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = jnp.tile(jnp.log(jnp.asarray(probs)), (20000, 1))
    for k, p, want in [(0, 1.0, probs), (2, 1.0, [0.625, 0.375, 0, 0]), (0, 0.7, [0.625, 0.375, 0, 0])]:
        draws = jit_sample(logits, jax.random.key(k), jnp.float32(1.0), jnp.int32(k), jnp.float32(p))
        freq = np.bincount(np.asarray(draws), minlength=4) / len(draws)
        np.testing.assert_allclose(freq, want, atol=0.015)
    # Temperature 2 flattens: p_i ∝ p_i^(1/2).
    draws = jit_sample(logits, jax.random.key(9), jnp.float32(2.0), jnp.int32(0), jnp.float32(1.0))
    flat = np.sqrt(probs) / np.sqrt(probs).sum()
    np.testing.assert_allclose(np.bincount(np.asarray(draws), minlength=4) / len(draws), flat, atol=0.015)


def test_seed_stop_tokens_and_rows_finishing_independently(base_params, naive_greedy):
    hot = dataclasses.replace(GREEDY, temperature=1.0, seed=5)
    a, b = generate(base_params, BASE, PROMPTS, hot), generate(base_params, BASE, PROMPTS, hot)
    assert a == b
    assert generate(base_params, BASE, PROMPTS, dataclasses.replace(hot, seed=6)) != a
    stop = naive_greedy[0][3]
    got = generate(base_params, BASE, PROMPTS, dataclasses.replace(GREEDY, stop_tokens=(stop,)))
    assert got.tokens[0] == naive_greedy[0][:naive_greedy[0].index(stop)] and got.finish[0] == "stop"
    for row, want, finish in zip(got.tokens[1:], naive_greedy[1:], got.finish[1:]):
        assert row == (want[:want.index(stop)] if stop in want else want)
        assert finish == ("stop" if stop in want else "length")


@pytest.mark.parametrize("change, match", [
    (dict(temperature=-1.0), "temperature"), (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_k=-1), "top_k"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(stop_tokens=(99,)), "stop token"),
    (dict(max_new_tokens=30), "max_new_tokens <= 22")])
def test_bad_sampling_settings_are_refused(base_params, change, match):
    with pytest.raises(ValueError, match=match):
        generate(base_params, BASE, [[1] * 10], SamplingConfig(**change))


def test_bad_prompts_and_encoder_decoder_without_source_are_refused(base_params):
    with pytest.raises(ValueError, match="shorten it"):
        generate(base_params, BASE, [[1] * 40], SamplingConfig(max_new_tokens=1))
    with pytest.raises(ValueError, match="at least one token"):
        generate(base_params, BASE, [[]], SamplingConfig())
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate(base_params, BASE, [[40]], SamplingConfig())
    with pytest.raises(ValueError, match="give one source per prompt"):   # tests/test_seq2seq.py: with one
        generate(None, dataclasses.replace(BASE, n_encoder_layers=1), [[1]], SamplingConfig())


# ---------------------------------------------------------------------------------------------
# Chat templates.

def test_chat_template_renders_and_cuts_the_reply(tmp_path):
    t = chat.get_template("transcript")
    text = t.render([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                     {"role": "user", "content": "Who are you?"}], system="Be brief.")
    assert text == "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Who are you?\nAssistant:"
    assert t.render([{"role": "user", "content": "x"}]).startswith(t.default_system)
    assert t.render([{"role": "system", "content": "S"}, {"role": "user", "content": "x"}]) == \
        "S\n\nUser: x\nAssistant:"
    assert t.reply(" I am a model.\nUser: and you?") == ("I am a model.", True)
    assert t.reply(" no stop here") == ("no stop here", False)
    assert set(chat.load_templates()) >= {"transcript", "chatml", "instruction"}
    with pytest.raises(ValueError, match="role"):
        t.render([{"role": "bot", "content": "x"}])
    with pytest.raises(ValueError, match="only the first"):
        t.render([{"role": "user", "content": "x"}, {"role": "system", "content": "y"}])
    with pytest.raises(ValueError, match="built-in templates"):
        chat.get_template("nope")
    custom = tmp_path / "t.json"
    custom.write_text(json.dumps({"mine": {"system": "[{content}]", "user": "Q: {content}\n",
                                           "assistant": "A: {content}\n", "generation_prompt": "A:",
                                           "stop": ["\nQ:"]}}))
    assert chat.get_template(str(custom)).render([{"role": "user", "content": "2+2"}]) == "Q: 2+2\nA:"
    custom.write_text(json.dumps({"bad": {"system": "no placeholder", "user": "{content}",
                                          "assistant": "{content}", "generation_prompt": "", "stop": []}}))
    with pytest.raises(ValueError, match="exactly once"):
        chat.get_template(str(custom))


# ---------------------------------------------------------------------------------------------
# lm-sample on runs trained by lm.train.train.

TINY_MODEL = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_seq_len=64, d_ff=64,
                         compute_dtype="float32")


def tiny_run(out_dir, data: DataConfig, vocab: int = 64) -> TrainConfig:
    return TrainConfig(model=dataclasses.replace(TINY_MODEL, vocab_size=vocab), data=data,
                       optim=OptimConfig(learning_rate=1e-2, warmup_steps=2), steps=20, batch_size=8,
                       eval_every=0, eval_batches=1, log_every=10, out_dir=str(out_dir),
                       peak_flops=1e11, progress=False, tensorboard=False)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    from lm.train import train
    cfg = tiny_run(tmp_path_factory.mktemp("syn") / "run", DataConfig(seq_len=32, synthetic_states=64))
    assert train(cfg)["status"] == "completed"
    return cfg


def test_lm_sample_on_a_synthetic_run(synthetic_run, capsys):
    out = synthetic_run.out_dir
    run = load_run(out)
    assert run.step == 20 and run.tokenizer is None and run.config == synthetic_run
    # The run dir, its checkpoints/ and checkpoints/20 all name the same checkpoint.
    for path in (f"{out}/checkpoints", f"{out}/checkpoints/20"):
        again = load_run(path)
        assert again.step == 20
        assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), again.params, run.params))
    assert main([out, "--prompt", "3 14 15", "--prompt", "7", "--temperature", "0", "--max-new-tokens", "10",
                 "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(r["tokens"]) for r in rows] == [10, 10]
    assert [r["tokens"] for r in rows] == generate(run.params, run.config.model, [[3, 14, 15], [7]],
                                                   SamplingConfig(max_new_tokens=10, temperature=0)).tokens
    assert main([out, "--prompt", "3,14,15", "--top-k", "5", "--top-p", "0.9", "--num-samples", "2",
                 "--max-new-tokens", "10"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("--- prompt 1, sample") == 2 and "3,14,15 | " in printed


@pytest.mark.parametrize("args, match", [
    (["--prompt", "the king"], "token ids"),
    (["--prompt", "1", "--chat"], "needs a text model"),
    (["--prompt", "1", "--temperature", "-0.5"], "temperature"),
    (["--prompt", "1", "--top-p", "2"], "top_p"),
    (["--prompt", " ".join(["1"] * 64)], "shorten it"),
    (["--prompt", "1", "--step", "7"], "no checkpoint at step 7"),
    (["--prompt", "1", "--stop", "999"], "--stop '999' holds ids [999] outside the vocabulary"),
])
def test_lm_sample_errors_name_the_fix(synthetic_run, capsys, args, match):
    assert main([synthetic_run.out_dir, *args]) == 2
    assert match in capsys.readouterr().err


def test_lm_sample_reports_a_corrupt_checkpoint_in_one_line(synthetic_run, tmp_path, capsys):
    import shutil
    run_dir = str(tmp_path / "run")
    shutil.copytree(synthetic_run.out_dir, run_dir)
    meta = os.path.join(run_dir, "checkpoints", "20", "meta", "metadata")
    open(meta, "a").write(" ")                         # one byte more than was sealed
    assert main([run_dir, "--prompt", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "Traceback" not in "".join(err)
    assert "checkpoint step 20" in err[0] and "meta/metadata" in err[0] and "truncated or overwritten" in err[0]
    assert "no intact checkpoint" in err[1]
    assert main([run_dir, "--prompt", "1", "--step", "20"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "checkpoint step 20" in line and "meta/metadata" in line
    assert os.path.isdir(os.path.join(run_dir, "checkpoints", "20"))     # a reader moves nothing


def test_lm_sample_without_a_checkpoint(tmp_path, capsys):
    assert main([str(tmp_path), "--prompt", "1"]) == 2
    assert "holds no checkpoints" in capsys.readouterr().err
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ValueError, match="no finished checkpoint"):
        load_run(str(tmp_path))


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    from lm.train import train
    words = "the king and queen of the north walked to a river where the old miller sang".split()
    rng = random.Random(0)
    corpus = tmp_path_factory.mktemp("corpus")
    for f in range(2):
        docs = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))) + "." for _ in range(60)]
        (corpus / f"part{f}.txt").write_text("\n\n".join(docs) + "\n")
    data = DataConfig(source=f"text:{corpus}/*.txt", data_dir=str(tmp_path_factory.mktemp("tfds")), seq_len=32)
    cfg = tiny_run(tmp_path_factory.mktemp("text") / "run", data, vocab=96)
    assert train(cfg)["status"] == "completed"
    return cfg


@pytest.mark.slow   # trains a tokenizer and a model on text: ~20 s of CPU
def test_lm_sample_on_a_text_run_with_and_without_chat(text_run, capsys):
    run = load_run(text_run.out_dir)
    assert run.tokenizer is not None and run.tokenizer.vocab_size == 96
    assert main([text_run.out_dir, "--prompt", "the king", "--prompt", "", "--temperature", "0.8",
                 "--max-new-tokens", "16", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all(isinstance(r["continuation"], str) for r in rows)
    assert rows[0]["continuation"] == run.tokenizer.decode(rows[0]["tokens"])       # no stop string: uncut
    assert len(rows[0]["tokens"]) == 16 if rows[0]["finish"] == "length" else len(rows[0]["tokens"]) < 16
    assert main([text_run.out_dir, "--chat", "--prompt", "who sang?", "--system", "Answer.",
                 "--max-new-tokens", "16", "--stop", "river", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["prompt"] == "Answer.\n\nUser: who sang?\nAssistant:"
    assert "river" not in row["continuation"] and "\nUser:" not in row["continuation"]
    assert row["continuation"] == row["continuation"].strip()
