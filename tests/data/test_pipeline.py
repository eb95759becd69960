"""The pipeline: datasets from config, deterministic batches, exact resume, disjoint splits, sharding."""

import dataclasses
import json

import numpy as np
import pytest

from lm.config import DataConfig
from lm.data import pipeline
from lm.data.pipeline import BatchStream, build_dataset, floor_of, process_rows, to_device

SMALL_SYN = DataConfig(seq_len=32, synthetic_states=64)


@pytest.fixture(scope="module")
def syn_train():
    return build_dataset(SMALL_SYN, "train")


@pytest.fixture(scope="module")
def text_cfg(corpus_glob, tfds_dir):
    return DataConfig(source="text:" + corpus_glob, data_dir=tfds_dir, seq_len=32)


@pytest.fixture(scope="module")
def text_train(text_cfg, tmp_path_factory):
    return build_dataset(text_cfg, "train", vocab_size_hint=96, workdir=str(tmp_path_factory.mktemp("run")))


def test_synthetic_dataset_from_config(syn_train):
    assert syn_train.vocab_size == 64 and syn_train.eos_id is None
    assert 0 < syn_train.entropy_floor < syn_train.language.bigram_entropy()
    b = BatchStream(syn_train, batch_size=8, seq_len=32, seed=0).batch(0)
    assert b.shape == (8, 33) and b.dtype == np.int32 and 0 <= b.min() and b.max() < 64


@pytest.mark.parametrize("which", ["syn", "text"])
def test_batches_are_deterministic_and_resume_exactly(which, syn_train, text_train):
    ds = syn_train if which == "syn" else text_train
    stream = BatchStream(ds, batch_size=8, seq_len=32, seed=3)
    seen = [next(stream) for _ in range(5)]
    state = json.loads(json.dumps(stream.state()))              # through JSON, as in a checkpoint
    expected = [next(stream) for _ in range(3)]
    resumed = BatchStream(ds, batch_size=8, seq_len=32, seed=3)
    resumed.restore(state)
    for want in expected:
        np.testing.assert_array_equal(next(resumed), want)
    np.testing.assert_array_equal(BatchStream(ds, 8, 32, seed=3).batch(2), seen[2])   # random access
    other_seed = BatchStream(ds, 8, 32, seed=4).batch(0)
    assert (other_seed != seen[0]).any()


def test_restore_refuses_a_different_config(syn_train):
    state = BatchStream(syn_train, 8, 32, seed=0).state()
    with pytest.raises(ValueError, match="batch_size"):
        BatchStream(syn_train, 16, 32, seed=0).restore(state)
    with pytest.raises(ValueError, match="seed"):
        BatchStream(syn_train, 8, 32, seed=1).restore(state)


@pytest.mark.parametrize("which", ["syn", "text"])
def test_process_rows_tile_the_global_batch(which, syn_train, text_train):
    """Any set of rows (strided, as a mesh with the batch split across hosts out of order gives)
    loads exactly those rows of the global batch; to_device puts them where the sharding says."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P
    ds = syn_train if which == "syn" else text_train
    whole = BatchStream(ds, 8, 32, seed=1).batch(7)
    for rows in ([0, 2, 4, 6], [1, 3, 5, 7], [5]):
        np.testing.assert_array_equal(BatchStream(ds, 8, 32, seed=1, rows=np.array(rows)).batch(7), whole[rows])
    for bad in ([2, 1], [8], []):
        with pytest.raises(ValueError, match="increasing indices"):
            BatchStream(ds, 8, 32, seed=1, rows=np.array(bad, np.int64))
    sharding = NamedSharding(jax.make_mesh((8,), ("data",)), P("data"))
    np.testing.assert_array_equal(process_rows(sharding, whole.shape), np.arange(8))
    np.testing.assert_array_equal(np.asarray(to_device(whole, sharding, np.arange(8), 8)), whole)
    with pytest.raises(ValueError, match="its devices need"):
        to_device(whole[:4], sharding, np.arange(4), 8)


def test_synthetic_train_and_eval_streams_are_disjoint():
    train, val = build_dataset(SMALL_SYN, "train"), build_dataset(SMALL_SYN, "validation")
    t = BatchStream(train, 64, 32, seed=0)
    v = BatchStream(val, 64, 32, seed=0)
    train_rows = {r.tobytes() for s in range(20) for r in t.batch(s)}
    assert not any(r.tobytes() in train_rows for s in range(5) for r in v.batch(s))
    # The held-out stream does not depend on the training seed: every run scores the same text.
    np.testing.assert_array_equal(BatchStream(val, 8, 32, seed=5).batch(0), v.batch(0)[:8])


def test_text_train_and_eval_splits_never_overlap(text_cfg, text_train):
    val = build_dataset(text_cfg, "validation", vocab_size_hint=96)
    tok = text_train.tokenizer
    train_docs = tok.decode(np.asarray(text_train.tokens)).split("\n")
    assert val.tokenizer.model_proto == tok.model_proto         # one tokenizer for both splits
    eos = text_train.eos_id
    def docs(ds):
        toks = np.asarray(ds.tokens)
        cuts = np.flatnonzero(toks == eos)
        return {tuple(toks[a + 1:b]) for a, b in zip(np.r_[-1, cuts[:-1]], cuts)}
    train_set, val_set = docs(text_train), docs(val)
    assert len(val_set) == 9 and not train_set & val_set
    stream = BatchStream(val, 4, 32, seed=0)
    row = stream.batch(0)[0]
    assert row.max() < val.vocab_size and train_docs


def test_text_rows_pack_documents_with_eos(text_train):
    stream = BatchStream(text_train, 16, 32, seed=0)
    rows = np.concatenate([stream.batch(s) for s in range(4)])
    assert (rows == text_train.eos_id).any()
    n = text_train.n_chunks(33)
    # One epoch visits every chunk exactly once.
    epoch = np.concatenate([BatchStream(text_train, 1, 32, seed=0).batch(i) for i in range(n)])
    flat = np.asarray(text_train.tokens)
    starts = sorted(int(np.flatnonzero((np.lib.stride_tricks.sliding_window_view(flat, 33) == r).all(1))[0])
                    for r in epoch[:50])
    assert len(set(starts)) == 50 and all(s % 32 == 0 for s in starts)


def test_text_tokenizer_and_tokens_are_cached_and_saved_in_the_run(text_cfg, text_train, tmp_path,
                                                                   monkeypatch):
    from lm.data import tokenizer as tok

    def refuse(*args, **kwargs):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(tok, "train_sentencepiece", refuse)
    monkeypatch.setattr(tok, "encode_documents", refuse)
    ds = build_dataset(text_cfg, "train", vocab_size_hint=96, workdir=str(tmp_path))
    assert (tmp_path / "tokenizer.model").is_file() and ds.vocab_size == 96
    np.testing.assert_array_equal(ds.tokens, text_train.tokens)


def _log_space_forward_nll(lang, tokens_BxL: np.ndarray) -> np.ndarray:
    """-log p(x_t | x_<t) [B, L] by a dense forward algorithm in log space (independent of the
    library's sparse, normalised one): log alpha_t = logsumexp(log alpha_{t-1} + log T) + log e."""
    from scipy.special import logsumexp

    with np.errstate(divide="ignore"):
        log_t, log_e, log_pi = np.log(lang.transition), np.log(lang.emission), np.log(lang.stationary)
    log_alpha = log_pi[None, :] + log_e[:, tokens_BxL[:, 0]].T              # [B, K]
    log_px = [logsumexp(log_alpha, axis=1)]                                   # log p(x_<=t)
    for t in range(1, tokens_BxL.shape[1]):
        log_alpha = logsumexp(log_alpha[:, :, None] + log_t[None], axis=1) + log_e[:, tokens_BxL[:, t]].T
        log_px.append(logsumexp(log_alpha, axis=1))
    log_px = np.stack(log_px, axis=1)
    return -np.diff(np.concatenate([np.zeros((len(tokens_BxL), 1)), log_px], axis=1), axis=1)


def test_floor_of_matches_an_independent_forward_pass(syn_train):
    val = build_dataset(SMALL_SYN, "validation")
    batch = BatchStream(val, 4, 12, seed=0).batch(0)                        # [4, 13]
    expected = _log_space_forward_nll(val.language, batch)[:, 1:].mean()
    assert floor_of(val, batch) == pytest.approx(expected, rel=1e-9)
    assert floor_of(val, batch[None]) == pytest.approx(expected, rel=1e-9)  # [steps, B, L+1] too
    # Scoring position 0 or shuffling tokens within rows changes the value (the targets matter).
    shuffled = np.random.default_rng(0).permuted(batch, axis=1)
    assert abs(floor_of(val, shuffled) - expected) > 0.05


def test_floor_of_text_is_refused(text_train):
    with pytest.raises(ValueError, match="no known entropy floor"):
        floor_of(text_train, np.zeros((1, 4), np.int32))


def test_bad_inputs_fail_before_training(text_cfg, tmp_path):
    with pytest.raises(ValueError, match="not a synthetic split"):
        build_dataset(SMALL_SYN, "dev")
    with pytest.raises(ValueError, match="max_seq_len"):
        build_dataset(SMALL_SYN, "train", max_seq_len=16)
    with pytest.raises(ValueError, match="vocab_size"):
        build_dataset(SMALL_SYN, "train", vocab_size_hint=32)
    with pytest.raises(ValueError, match="not known"):
        build_dataset(dataclasses.replace(SMALL_SYN, source="hf:foo"), "train")
    with pytest.raises(ValueError, match="splits are"):
        build_dataset(text_cfg, "test", vocab_size_hint=96)
    with pytest.raises(ValueError, match="no text feature"):
        build_dataset(dataclasses.replace(text_cfg, text_feature="body"), "train", vocab_size_hint=96)
    with pytest.raises(ValueError, match="larger than this corpus supports"):
        build_dataset(text_cfg, "train", vocab_size_hint=20000)
    with pytest.raises(ValueError, match="fewer than one sequence"):
        build_dataset(dataclasses.replace(text_cfg, seq_len=100_000), "validation", vocab_size_hint=96)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        build_dataset(text_cfg, "train")
    with pytest.raises(FileNotFoundError, match="lm.data.tfds_text prepare tiny_shakespeare"):
        build_dataset(DataConfig(source="tfds:tiny_shakespeare", data_dir=str(tmp_path)), "train",
                      vocab_size_hint=256)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        build_dataset(DataConfig(source=f"text:{tmp_path}/empty.txt", data_dir=str(tmp_path)), "train",
                      vocab_size_hint=256)


def test_to_device_shards_the_batch_over_devices(syn_train, n_devices):
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data", None))
    batch = BatchStream(syn_train, 16, 32, seed=0).batch(0)
    arr = to_device(batch, sharding)
    assert arr.shape == (16, 33) and arr.sharding == sharding
    assert len(arr.addressable_shards) == n_devices
    np.testing.assert_array_equal(np.asarray(arr), batch)


def test_a_few_training_steps_on_local_text(text_train, n_devices):
    """A bigram model trained on the local-text TFDS set through the sharded pipeline learns."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()), ("data",))
    data_sharding = NamedSharding(mesh, P("data", None))
    v = text_train.vocab_size
    params = {"emb": jnp.zeros((v, 32)), "out": jax.random.normal(jax.random.PRNGKey(0), (32, v)) * 0.02}
    tx = optax.adam(3e-2)
    opt = tx.init(params)

    def loss_fn(p, batch):
        logits = p["emb"][batch[:, :-1]] @ p["out"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

    @jax.jit
    def step(p, opt, batch):
        loss, g = jax.value_and_grad(loss_fn)(p, batch)
        updates, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, updates), opt, loss

    stream = BatchStream(text_train, batch_size=16, seq_len=32, seed=0)
    losses = []
    for _ in range(30):
        params, opt, loss = step(params, opt, to_device(next(stream), data_sharding))
        losses.append(float(loss))
    assert losses[0] == pytest.approx(np.log(v), abs=0.05)
    assert np.mean(losses[-5:]) < losses[0] - 1.0
