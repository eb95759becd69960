"""Encoder-decoder end to end: the synthetic translation task (exact floor, random access rows),
the target-only seq2seq loss, lm-train on paired data (loss falls towards the floor, exact resume)
and the bad inputs refused before anything is compiled or written."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm.checkpoint import Checkpoints
from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.data import paired
from lm.data.pipeline import BatchStream, build_dataset, floor_of
from lm.model import forward, init_params
from lm.step import seq2seq_loss
from lm.train import train

DATA = DataConfig(source="translation", seq_len=8, synthetic_vocab=16, translation_noise=0.2)


def test_translation_rows_are_random_access_and_split_into_source_and_target():
    ds = build_dataset(DATA, "train")
    stream = BatchStream(ds, batch_size=4, seq_len=8, seed=3)
    rows = stream.batch(2)
    assert rows.shape == (4, 8 + 1 + 8) and rows.dtype == np.int32
    np.testing.assert_array_equal(ds.rows(np.arange(9, 11), 9, 3), rows[1:3])   # row i = batch i // B
    src, tgt = paired.split_rows(rows, 8)
    assert np.all(tgt[:, 0] == paired.BOS_ID) and np.all((src >= 1) & (src < 16)) and np.all(tgt[:, 1:] >= 1)
    assert not np.array_equal(ds.rows(np.arange(4), 9, 3), ds.rows(np.arange(4), 9, 4))   # train: seeded
    held_out = build_dataset(DATA, "validation")
    np.testing.assert_array_equal(held_out.rows(np.arange(4), 9, 3), held_out.rows(np.arange(4), 9, 4))
    assert not np.array_equal(held_out.rows(np.arange(4), 9, 0), ds.rows(np.arange(4), 9, 0))
    with pytest.raises(ValueError, match="target tokens"):
        ds.rows(np.arange(2), 12, 0)


def test_channel_is_a_distribution_and_the_floor_is_its_exact_entropy():
    ds = build_dataset(DATA, "validation")
    ch = ds.channel
    words = np.arange(1, 16)
    src, tgt = np.meshgrid(words, words, indexing="ij")
    probs = np.exp(ch.log_prob(src, tgt))                    # [x, y]
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(-(probs * np.log(probs)).sum(1), ch.entropy()[1:], rtol=1e-12)
    assert sorted(ch.perm[1:]) == list(words)                 # a dictionary: a permutation of the words
    # The realised floor of many rows agrees with the exact expectation (mean of h over words).
    rows = ds.rows(np.arange(20_000), 9, 0)
    src, tgt = paired.split_rows(rows, 8)
    nll = -ch.log_prob(src, tgt[:, 1:])
    assert floor_of(ds, rows) == pytest.approx(nll.mean())
    assert abs(nll.mean() - ds.entropy_floor) < 4 * nll.std() / np.sqrt(nll.size)
    hit = (tgt[:, 1:] == ch.perm[src]).mean()
    assert hit == pytest.approx(1 - ch.eps[1:].mean() + ch.eps[1:].mean() / 15, abs=0.005)
    noiseless = build_dataset(dataclasses.replace(DATA, translation_noise=0.0), "validation")
    assert noiseless.entropy_floor == 0.0


def test_seq2seq_loss_scores_target_tokens_only_and_masks_padding():
    cfg = ModelConfig(vocab_size=16, d_model=32, n_layers=1, n_encoder_layers=1, n_heads=2, d_ff=64,
                      max_seq_len=8, compute_dtype="float32")
    params = init_params(cfg, jax.random.key(0))
    rows = jnp.asarray(build_dataset(DATA, "train").rows(np.arange(3), 9, 0))
    src, tgt = rows[:, :8], rows[:, 8:]
    logits = jax.jit(forward, static_argnums=2)(params, tgt[:, :-1], cfg, src)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, tgt[:, 1:])
    loss_fn = jax.jit(seq2seq_loss, static_argnums=(2, 3))
    loss, count = loss_fn(params, rows, cfg, 8)
    assert float(count) == 24 and float(loss) == pytest.approx(float(nll.mean()), rel=1e-6)
    padded = rows.at[0, -3:].set(-1)                          # row 0's last 3 targets are padding
    loss_p, count_p = loss_fn(params, padded, cfg, 8)
    keep = np.ones((3, 8), bool)
    keep[0, -3:] = False
    assert float(count_p) == 21
    assert float(loss_p) == pytest.approx(float(nll[keep].mean()), rel=1e-6)  # causal: earlier logits unchanged
    short = rows.at[0, 5:8].set(-1)                          # row 0's source is 5 tokens, padded to 8
    loss_s, count_s = loss_fn(params, short, cfg, 8)
    own = forward(params, tgt[:1, :-1], cfg, src[:1, :5])    # that row with its unpadded source alone
    nll_s = nll.at[0].set(optax.softmax_cross_entropy_with_integer_labels(own, tgt[:1, 1:])[0])
    assert float(count_s) == 24 and float(loss_s) == pytest.approx(float(nll_s.mean()), rel=1e-5)
    assert abs(float(loss_s) - float(loss)) > 1e-4                         # the source padding mattered


def test_grad_accumulation_on_padded_paired_data_matches_the_full_batch():
    """grad_accum 2 == 1 when padding leaves the micro-batches different numbers of target tokens
    (micro-batch 0 = rows 0, 2, ... is mostly padding): the loss and the update are the batch's
    mean per token, not the mean of the micro-batches' means (issue 26)."""
    from lm.config import MeshConfig
    from lm.sharding import make_mesh
    from lm.step import compile_steps

    cfg = ModelConfig(vocab_size=16, d_model=32, n_layers=1, n_encoder_layers=1, n_heads=2, d_ff=64,
                      max_seq_len=8, compute_dtype="float32")
    rows = build_dataset(DATA, "train").rows(np.arange(8), 9, 0)
    rows[0::2, 8 + 2:] = -1                                  # even rows: 1 target token of 8
    loss_fn = lambda params, batch: seq2seq_loss(params, batch, cfg, 8)
    mesh = make_mesh(MeshConfig(data=2), jax.devices()[:2])
    out = []
    for accum in (1, 2):
        c = compile_steps(cfg, optax.sgd(1.0), mesh, grad_accum=accum, loss_fn=loss_fn)
        state = c.init(jax.random.PRNGKey(0))
        before = jax.device_get(state.params)
        state, metrics = c.train_step(state, jax.device_put(rows, c.batch_sharding))
        out.append((float(metrics["loss"]), jax.tree.map(lambda a, b: np.asarray(a) - b, state.params, before)))
    (loss_1, update_1), (loss_2, update_2) = out
    assert loss_2 == pytest.approx(loss_1, rel=1e-6)
    for a, b in zip(jax.tree.leaves(update_1), jax.tree.leaves(update_2)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)


def tiny(out_dir, **kw) -> TrainConfig:
    base = TrainConfig(
        model=ModelConfig(vocab_size=16, d_model=32, n_layers=1, n_encoder_layers=1, n_heads=2, d_ff=64,
                          max_seq_len=8, positions="learned", compute_dtype="float32"),
        data=DATA, optim=OptimConfig(learning_rate=1e-2, warmup_steps=5),
        steps=40, batch_size=16, eval_every=20, eval_batches=2, log_every=10, checkpoint_every=20,
        keep_checkpoints=5, out_dir=str(out_dir), peak_flops=1e11, progress=False)
    return dataclasses.replace(base, **kw)


def test_lm_train_trains_an_encoder_decoder_on_paired_data_and_resumes_exactly(tmp_path, capsys):
    cfg = tiny(tmp_path / "a")
    result = train(cfg)
    assert result["status"] == "completed"
    curve = [e["eval_loss"] for e in result["eval_curve"]]
    assert curve[-1] < curve[0] < np.log(16)
    ds = build_dataset(DATA, "validation")
    evals = BatchStream(ds, 16, 8, DATA.seed + 1)
    assert result["entropy_floor"] == pytest.approx(floor_of(ds, np.concatenate([evals.batch(i) for i in range(2)])))
    assert result["entropy_floor"] < curve[-1]

    # Resume: a copy of the run cut back to its step-20 checkpoint finishes with the same weights.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "40")
    os.remove(tmp_path / "b" / "result.json")
    resumed = train(dataclasses.replace(cfg, out_dir=str(tmp_path / "b")))
    assert resumed["resumed_from"] == 20 and resumed["eval_loss"] == result["eval_loss"]
    from lm.optim import make_optimizer
    from lm.sharding import make_mesh
    from lm.step import compile_steps
    compiled = compile_steps(cfg.model, make_optimizer(cfg.optim, cfg.steps), make_mesh(cfg.mesh))
    finals = [Checkpoints(str(tmp_path / r / "checkpoints")).restore(compiled.abstract_state)[0]
              for r in ("a", "b")]
    for x, y in zip(*map(jax.tree.leaves, finals)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))

    # lm-sample translates given sources: greedy ids equal generate() on the restored parameters.
    from lm.generate import SamplingConfig, generate, main
    params = jax.tree.map(np.asarray, finals[0].params)
    want = generate(params, cfg.model, [[0]], SamplingConfig(max_new_tokens=7, temperature=0.0),
                    sources=[[1, 2, 3, 4, 5, 6, 7, 8]]).tokens[0]
    assert main([str(tmp_path / "a"), "--prompt", "0", "--source", "1 2 3 4 5 6 7 8", "--temperature", "0",
                 "--max-new-tokens", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["tokens"] == want and len(want) == 7
    assert main([str(tmp_path / "a"), "--prompt", "0", "--max-new-tokens", "4"]) == 2
    assert "give one source per prompt" in capsys.readouterr().err


@pytest.mark.parametrize("change, match", [
    (dict(model=ModelConfig(vocab_size=16, d_model=32, n_layers=1, n_heads=2, max_seq_len=8)), "paired data"),
    (dict(data=dataclasses.replace(DATA, source="synthetic")), "paired data"),
    (dict(data=dataclasses.replace(DATA, translation_noise=0.7)), "translation_noise"),
    (dict(data=dataclasses.replace(DATA, synthetic_vocab=32)), "vocab_size"),
    (dict(data=dataclasses.replace(DATA, seq_len=16)), "max_seq_len"),        # source longer than the context
    (dict(data=dataclasses.replace(DATA, source="translaton")), "not known"),
])
def test_bad_paired_configs_fail_before_anything_is_written(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        train(dataclasses.replace(tiny(tmp_path / "run"), **change))
    assert not os.path.exists(tmp_path / "run")


def test_translation_split_and_vocab_are_checked():
    with pytest.raises(ValueError, match="not a translation split"):
        build_dataset(DATA, "dev")
    with pytest.raises(ValueError, match="vocab_size"):
        build_dataset(DATA, "train", vocab_size_hint=8)
    with pytest.raises(ValueError, match="vocab >= 3"):
        build_dataset(dataclasses.replace(DATA, synthetic_vocab=2), "train")


ENC_DEC = {
    "rope_scan": ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_encoder_layers=2, n_heads=4, d_ff=64,
                             max_seq_len=16, compute_dtype="float32"),
    "learned_unrolled_gqa_post": ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_encoder_layers=1,
                                             n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=16,
                                             positions="learned", scan_layers=False, norm_position="post",
                                             compute_dtype="float32"),
    "mup_learned": ModelConfig(vocab_size=16, d_model=32, n_layers=1, n_encoder_layers=1, n_heads=4, d_ff=64,
                               max_seq_len=16, positions="learned", parametrization="mup",
                               compute_dtype="float32"),
}


@pytest.mark.parametrize("name", list(ENC_DEC))
def test_cached_encoder_decoder_decoding_equals_the_full_forward_at_every_position(name):
    """Prefill 3 target tokens with the source (encoder once, cross K/V cached), then feed the rest one
    at a time without the source: every logit equals one forward pass over (src, whole target)."""
    from lm.model import decode, init_cache
    cfg = ENC_DEC[name]
    params = init_params(cfg, jax.random.key(1))
    src = jax.random.randint(jax.random.key(2), (2, 7), 1, 16)
    tgt = jax.random.randint(jax.random.key(3), (2, 10), 0, 16)
    full = forward(params, tgt, cfg, src_BxS=src)
    pos = jnp.broadcast_to(jnp.arange(10), (2, 10))
    logits, cache = decode(params, tgt[:, :3], pos[:, :3], init_cache(cfg, 2, 10, src_len=7), cfg, src_BxS=src)
    steps = [logits]
    step = jax.jit(lambda p, t, q, c: decode(p, t, q, c, cfg))
    for t in range(3, 10):
        logits, cache = step(params, tgt[:, t:t + 1], pos[:, t:t + 1], cache)
        steps.append(logits)
    cached = jnp.concatenate(steps, axis=1)
    err = float(jnp.max(jnp.abs(cached - full)) / jnp.max(jnp.abs(full)))
    assert err <= 1e-5, err
    with pytest.raises(ValueError, match="src_len"):
        init_cache(cfg, 2, 10)


def _is_greedy(params, cfg, src, prompt, generated):
    """Whether each generated token is the argmax of one full forward pass over (src, prompt + generated)."""
    seq = jnp.asarray([list(prompt) + list(generated)])
    logits = forward(params, seq, cfg, src_BxS=jnp.asarray([src]))
    return jnp.argmax(logits[0, len(prompt) - 1:-1], axis=-1).tolist() == list(generated)


def test_generate_on_an_encoder_decoder_caches_the_source_and_matches_greedy_forward():
    from lm.generate import SamplingConfig, generate
    cfg = ENC_DEC["rope_scan"]
    params = init_params(cfg, jax.random.key(4))
    sources, prompts = [[3, 1, 4, 1, 5, 9], [2, 7, 1, 8, 2, 8]], [[0], [0, 5, 6]]
    greedy = SamplingConfig(max_new_tokens=6, temperature=0.0)
    cached = generate(params, cfg, prompts, greedy, sources=sources)
    assert all(len(t) == 6 for t in cached.tokens)
    assert all(_is_greedy(params, cfg, s, p, t) for s, p, t in zip(sources, prompts, cached.tokens))
    assert generate(params, cfg, prompts, greedy, sources=sources, use_cache=False).tokens == cached.tokens
    sampled = SamplingConfig(max_new_tokens=6, temperature=1.0, top_k=5, top_p=0.9, seed=3)
    a = generate(params, cfg, prompts, sampled, sources=sources)
    assert a.tokens == generate(params, cfg, prompts, sampled, sources=sources, use_cache=False).tokens
    other = generate(params, cfg, prompts, greedy, sources=[[9] * 6, [9] * 6])
    assert other.tokens != cached.tokens                       # the source matters


@pytest.mark.parametrize("sources, match", [
    (None, "give one source per prompt"),
    ([[1, 2]], "one non-empty source per prompt"),
    ([[1] * 17, [1] * 17], "longer than the encoder's context"),
    ([[1, 16], [1, 2]], "outside the vocabulary"),
])
def test_generate_refuses_bad_sources_before_compiling(sources, match):
    from lm.generate import SamplingConfig, generate
    cfg = ENC_DEC["rope_scan"]
    with pytest.raises(ValueError, match=match):
        generate(None, cfg, [[0], [0]], SamplingConfig(max_new_tokens=2), sources=sources)  # no params needed


@pytest.mark.slow
def test_ragged_sources_in_one_batch_decode_as_each_would_alone():
    """Sources of lengths 3, 6 and 5 in one batch (right-padded, the padding masked in the encoder and
    the cross-attention): each row's logits and greedy tokens equal that row decoded by itself."""
    from lm.generate import SamplingConfig, generate
    cfg = ENC_DEC["learned_unrolled_gqa_post"]
    params = init_params(cfg, jax.random.key(5))
    sources, prompts = [[3, 1, 4], [2, 7, 1, 8, 2, 8], [5, 5, 6, 9, 11]], [[0], [0, 5], [0]]
    greedy = SamplingConfig(max_new_tokens=5, temperature=0.0)
    batch = generate(params, cfg, prompts, greedy, sources=sources).tokens
    alone = [generate(params, cfg, [p], greedy, sources=[s]).tokens[0] for s, p in zip(sources, prompts)]
    assert batch == alone
    src = np.zeros((3, 6), np.int32)
    mask = np.zeros((3, 6), bool)
    for b, s in enumerate(sources):
        src[b, :len(s)], mask[b, :len(s)] = s, True
    src[~mask] = 13                                     # whatever the padding holds, it is never seen
    tgt = jnp.asarray([[0, 4, 9, 2]] * 3)
    padded = forward(params, tgt, cfg, src_BxS=jnp.asarray(src), src_mask_BxS=jnp.asarray(mask))
    for b, s in enumerate(sources):
        own = forward(params, tgt[b:b + 1], cfg, src_BxS=jnp.asarray([s]))
        np.testing.assert_allclose(padded[b:b + 1], own, rtol=1e-5, atol=1e-5)


def test_generate_refuses_sources_for_a_decoder_only_model():
    from lm.generate import SamplingConfig, generate
    cfg = dataclasses.replace(ENC_DEC["rope_scan"], n_encoder_layers=0)
    with pytest.raises(ValueError, match="decoder-only"):
        generate(None, cfg, [[0]], SamplingConfig(max_new_tokens=2), sources=[[1, 2]])
