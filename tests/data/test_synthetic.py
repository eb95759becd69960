"""The synthetic language: exact tables, deterministic random-access sampling, exact likelihood."""

import itertools

import numpy as np
import pytest

from lm.data import synthetic as syn

SPEC = syn.LanguageSpec(states=64, vocab=16, successors=3, emissions=2, zipf=1.0, seed=7)


@pytest.fixture(scope="module")
def lang():
    return syn.SyntheticLanguage(SPEC)


def test_tables_are_exact_distributions(lang):
    np.testing.assert_allclose(lang.transition.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(lang.emission.sum(1), 1.0, atol=1e-12)
    assert (lang.transition_counts >= 1).all() and (lang.transition_counts.sum(1) == 4096).all()
    assert (lang.emission_counts[:, 0] >= lang.emission_counts[:, 1]).all()      # dominant token first
    assert len({tuple(r) for r in lang.successor_ids.tolist()}) > 1
    assert all(len(set(r)) == len(r) for r in lang.successor_ids.tolist())       # distinct successors
    np.testing.assert_allclose(lang.stationary @ lang.transition, lang.stationary, atol=1e-12)


def test_same_seed_same_language_and_other_seed_differs():
    a, b = syn.SyntheticLanguage(SPEC), syn.SyntheticLanguage(SPEC)
    assert (a.successor_ids == b.successor_ids).all() and (a.emission_ids == b.emission_ids).all()
    c = syn.SyntheticLanguage(syn.LanguageSpec(**{**SPEC.__dict__, "seed": 8}))
    assert not (a.successor_ids == c.successor_ids).all()


def test_sampling_is_deterministic_random_access_and_prefix_stable(lang):
    x = lang.sample(3, 0, 16, 50)
    assert x.dtype == np.int32 and x.shape == (16, 50) and 0 <= x.min() and x.max() < SPEC.vocab
    np.testing.assert_array_equal(x, lang.sample(3, 0, 16, 50))
    np.testing.assert_array_equal(x[:, :20], lang.sample(3, 0, 16, 20))           # prefix of a longer one
    np.testing.assert_array_equal(x[[5, 2, 9]], lang.sample(3, 0, np.array([5, 2, 9]), 50))
    np.testing.assert_array_equal(x[4:10], lang.sample(3, 0, 6, 50, start=4))
    assert (x != lang.sample(3, 1, 16, 50)).mean() > 0.5                          # another shard
    assert (x != lang.sample(4, 0, 16, 50)).mean() > 0.5                          # another seed


def _brute_force_prob(lang, seq):
    """p(x_0..x_n) by summing over every hidden path."""
    total = 0.0
    for path in itertools.product(range(lang.spec.states), repeat=len(seq)):
        p = lang.stationary[path[0]] * lang.emission[path[0], seq[0]]
        for t in range(1, len(seq)):
            p *= lang.transition[path[t - 1], path[t]] * lang.emission[path[t], seq[t]]
            if p == 0:
                break
        total += p
    return total


def test_forward_algorithm_matches_brute_force():
    tiny = syn.SyntheticLanguage(syn.LanguageSpec(states=4, vocab=3, successors=2, emissions=2, seed=3))
    seqs = np.array(list(itertools.product(range(3), repeat=4)))          # all 81 strings of length 4
    nll = tiny.nll(seqs)
    for seq, row in zip(seqs, nll):
        for t in range(1, 5):
            expected = _brute_force_prob(tiny, seq[:t])
            np.testing.assert_allclose(np.exp(-row[:t].sum()), expected, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(np.exp(-nll.sum(1)).sum(), 1.0, rtol=1e-12)  # a distribution


def test_sampler_follows_the_likelihood():
    tiny = syn.SyntheticLanguage(syn.LanguageSpec(states=5, vocab=4, successors=2, emissions=2, seed=11))
    x = tiny.sample(0, 0, 200_000, 3)
    codes = (x * np.array([16, 4, 1])).sum(1)
    freq = np.bincount(codes, minlength=64) / len(codes)
    strings = np.array(list(itertools.product(range(4), repeat=3)))
    prob = np.exp(-tiny.nll(strings).sum(1))
    assert np.abs(freq - prob).max() < 4 * np.sqrt(prob.max() / len(codes)) + 1e-3


def test_floor_is_between_zero_and_the_bigram_level(lang):
    floor = lang.entropy_floor(32, n_targets=4096)
    assert 0 < floor < lang.bigram_entropy() < lang.unigram_entropy() <= np.log(SPEC.vocab)
    held_out = lang.sample(0, 1, 64, 33)
    assert abs(lang.floor_of(held_out) - floor) < 0.15
    # A different language scores this text worse than its own generator.
    other = syn.SyntheticLanguage(syn.LanguageSpec(**{**SPEC.__dict__, "seed": 99}))
    with np.errstate(divide="ignore"):
        assert other.floor_of(held_out) > lang.floor_of(held_out)


@pytest.mark.parametrize("kwargs, match", [
    (dict(states=1), "at least 2"),
    (dict(vocab=4, emissions=5), "synthetic_emissions"),
    (dict(states=4, successors=5), "synthetic_successors"),
    (dict(zipf=-1.0), "synthetic_zipf"),
])
def test_bad_specs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        syn.SyntheticLanguage(syn.LanguageSpec(**{**SPEC.__dict__, **kwargs}))


def test_nll_refuses_out_of_range_tokens(lang):
    with pytest.raises(ValueError, match="token ids"):
        lang.nll(np.full((1, 4), SPEC.vocab))
