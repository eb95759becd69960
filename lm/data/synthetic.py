"""The default data: a Zipfian sparse hidden Markov language whose best possible loss is known.

The process
-----------
A hidden Markov model with K states and a vocabulary of V tokens, built deterministically from a
language seed (`DataConfig.synthetic_*`):

- Transitions. Each state has S successors. One successor is its next state on a random cycle
  through all K states (so every state is reachable and the chain is irreducible); the other S-1
  are distinct states drawn without replacement with Zipf(alpha) weights over a random ranking of
  the states, so a few states are the successors of many and most are rare. The S transition
  probabilities are Dirichlet(1), quantised to multiples of 2^-12 (each at least 2^-12).
- Emissions. Each state emits one of E distinct random tokens with Dirichlet(1) probabilities
  (also quantised to 2^-12) sorted so that the first token dominates; with K > V a token is shared
  by about K*E/V states, so the hidden state must be inferred from context.
- Sequences start from the stationary distribution of the chain.

The probabilities are exact rationals, so sampling is exact: one 64-bit counter-based hash
(splitmix64) of (seed, shard, sequence index, position) per token gives 12 bits that pick the next
state through a [K, 4096] lookup table and 12 bits that pick the emitted token. Any sequence of any
shard is therefore random access and infinite: the stream never repeats at any size swept, sequence
i of shard s is the same on every machine, and a longer sequence extends a shorter one.

The entropy floor
-----------------
The Bayes-optimal predictor of x_t given x_<t is the HMM's own predictive distribution, computed by
the forward algorithm (`nll`). `floor_of(tokens)` is the exact mean -log p(x_t | x_<t) over the
target positions of [B, seq+1] batches, conditioning on each sequence's own prefix exactly as a
model is scored; `entropy_floor(seq_len)` estimates the same quantity on a fixed held-out sample
(65,536 targets, standard error about 0.004 nats). No model can beat it in expectation.

Why the learning curves follow power laws
-----------------------------------------
What there is to learn comes in many pieces of Zipf-distributed frequency (the "quantization" view
of neural scaling, Michaud et al. 2023): the transition structure of each state is a piece, and the
stationary mass of the states, set by the Zipfian successor choice, spans orders of magnitude. A
model trained on D tokens has seen the transitions out of a state about D*pi(state) times, so it
learns the frequent states first and each tenfold more data uncovers a further slice of the tail; a
model of N parameters can store the transition/emission structure of only so many states and must
approximate the belief over hidden states with a bounded circuit, so capacity cuts the tail too.
Summing a Zipf tail of unlearnt pieces gives a loss excess that falls as a power of D and of N. A
small Markov chain with a few regular pieces, by contrast, is learned completely by tiny models.
The tail is finite (K states), so once even the rarest states have been seen often enough the
excess collapses towards the floor faster than the power law; below, that happens past ~1e13
FLOPs for the defaults, and more states or a flatter Zipf push it further out.

Measured (2026-11-26) for the defaults K=512, V=64, S=3, E=2, alpha=1, language seed 1234
--------------------------------------------------------------------------------------------
Reference levels, nats/token: log V = 4.16; unigram entropy 3.745; bigram H(x_t | x_t-1) 2.412 (a
perfect bigram model); entropy floor at seq_len 128 = 1.333 (`entropy_floor(128)`), 1.335 on the
256 held-out sequences scored below. 100 effective states (exp of the stationary entropy).
Speed, one core of the 2-core AMD EPYC VM (`python -m experiments.bench.data`): 15-36M tokens/s
sampling blocks of 1024-4096 sequences, 10M tokens/s (0.42 ms) for one default 32x129 batch; the
floor costs 0.3-0.4 s per 100K tokens.

Learnability. Throwaway probe (not in the repo): a pre-norm transformer with learned positions,
RMSNorm, GELU MLP of 4d, untied unembedding; AdamW (0.9, 0.95, wd 0.1), clip 1, lr 3e-3 (2e-3 at
d256), warmup min(100, steps/10), cosine to 10 %; batch 32 x 128; eval on 256 sequences of the
validation shard, whose floor is 1.3354. Run on one H200 (the same runs on this CPU gave the same
losses to 1e-4: d32 L2 1.9253, d64 L3 1.5944 at 3.9M tokens). N = non-embedding parameters,
D = training tokens, FLOPs = 6ND. Entries are eval loss - floor (nats/token):

    model    N        D=0.82M   3.9M    16M     64M        6ND at 3.9M
    d32 L2   24.7K    1.198     0.590   0.242   0.156      5.8e11
    d64 L3   148K     1.107     0.259   0.072   0.035      3.5e12
    d128 L4  788K     0.918     0.099   0.021   0.009      1.8e13
    d256 L4  3.15M    0.775     0.057   0.013   0.006      7.4e13

Within 1e11-1e13 FLOPs the excess runs from 1.2 down to 0.07 nats: it falls with N and with D
and stays clearly above the floor. Runs of 200 steps (D=0.82M) still sit near the bigram plateau;
over the 12 runs of >= 950 steps, log(loss - floor) = 16.4 - 0.60 log N - 0.71 log D (R^2 0.96),
and a Chinchilla fit L = E + A/N^a + B/D^b with E free (Huber on log loss, L-BFGS from a grid)
puts E at 1.318 against the true 1.335.

The project's own model learns faster (RoPE, SwiGLU). `lm-train` on this CPU, scored on its 4 eval
batches of 32 sequences (floor 1.334 there): the default d64 L3 run of 300 steps (1.2M tokens)
reaches 1.620 (excess 0.286); `lm-train model.d_model=32 model.n_layers=2 model.n_heads=2
model.d_ff=128 steps=1000` (4.1M tokens) reaches 1.508 (excess 0.174).

A harder setting, for budgets above ~1e13 FLOPs where the default comes within a few hundredths
of the floor: synthetic_states=1024, synthetic_zipf=0.8 (floor 1.323, bigram 2.93). On it the
default lm-train run reaches excess 0.784 and the d32 L2 run above 0.521 (vs 0.286 and 0.174);
the probe's d64 L3 0.417 at 6.3M tokens and 0.186 at 25.6M (default: 0.259 at 3.9M, 0.072 at 16M).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

QUANT_BITS = 12
"""Transition and emission probabilities are multiples of 2^-QUANT_BITS."""
_Q = 1 << QUANT_BITS
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

FLOOR_SHARD = 1_000_003
"""Shard used for the fixed held-out sample behind `entropy_floor` (never a train or eval shard)."""


# ---------------------------------------------------------------------------------------------
# Counter-based randomness: splitmix64 of a key, vectorised in numpy (wrapping uint64 arithmetic).

def _mix64_int(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (in place on a temporary)."""
    z = z ^ (z >> np.uint64(30))
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def stream_key(*parts: int) -> int:
    """A 64-bit key from integers (seed, shard, ...): chained splitmix64."""
    key = 0x243F6A8885A308D3
    for part in parts:
        key = _mix64_int(key ^ _mix64_int(int(part) + _GOLDEN))
    return key


def random_bits(key: int, rows: np.ndarray, length: int) -> np.ndarray:
    """uint64 [len(rows), length]: the hash of (key, row, position), independent of `length`."""
    row_keys = _mix64(np.asarray(rows, dtype=np.uint64) * np.uint64(_GOLDEN) + np.uint64(key))
    steps = (np.arange(1, length + 1, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03))
    return _mix64(row_keys[:, None] + steps[None, :])


def _uniform(key: int, n: int) -> np.ndarray:
    """n float64 uniforms in (0, 1) from a key (used to build the language's tables)."""
    bits = random_bits(key, np.zeros(1, dtype=np.uint64), n)[0]
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _quantise(p: np.ndarray) -> np.ndarray:
    """Integer counts summing to 2^QUANT_BITS along the last axis, each >= 1 (largest remainder)."""
    n = p.shape[-1]
    scaled = p * (_Q - n)
    counts = np.floor(scaled).astype(np.int64)
    short = (_Q - n) - counts.sum(-1)
    order = np.argsort(-(scaled - counts), axis=-1, kind="stable")
    ranks = np.argsort(order, axis=-1, kind="stable")
    counts += ranks < short[..., None]
    return counts + 1


# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LanguageSpec:
    """The knobs that define a synthetic language (see the module docstring)."""

    states: int = 512
    vocab: int = 64
    successors: int = 3
    emissions: int = 2
    zipf: float = 1.0
    seed: int = 1234

    def validate(self) -> "LanguageSpec":
        if self.states < 2:
            raise ValueError(f"synthetic_states={self.states}: need at least 2 hidden states")
        if self.states > (1 << 16):
            raise ValueError(f"synthetic_states={self.states} is above the supported 65536")
        if not 2 <= self.vocab <= (1 << 20):
            raise ValueError(f"synthetic vocabulary {self.vocab} must be in [2, 1048576]")
        if not 1 <= self.successors <= min(self.states, 64):
            raise ValueError(f"synthetic_successors={self.successors} must be in [1, {min(self.states, 64)}]"
                             " (at most the number of states)")
        if not 1 <= self.emissions <= min(self.vocab, 64):
            raise ValueError(f"synthetic_emissions={self.emissions} must be in [1, {min(self.vocab, 64)}]"
                             " (at most the vocabulary size)")
        if self.zipf < 0:
            raise ValueError(f"synthetic_zipf={self.zipf} must be >= 0 (0 = uniform successors)")
        return self


class SyntheticLanguage:
    """A sparse Zipfian HMM: exact sampling by lookup tables and exact likelihood by forward pass.

    Tables (K states, S successors, E emissions, V tokens):
      successor_ids [K, S] int, transition_counts [K, S] (over 4096),
      emission_ids [K, E] int, emission_counts [K, E] (over 4096),
      stationary [K] float64; next_table [K*4096] and emit_table [K*4096] for sampling.
    """

    def __init__(self, spec: LanguageSpec):
        self.spec = spec.validate()
        k, v, s, e = spec.states, spec.vocab, spec.successors, spec.emissions
        key = functools.partial(stream_key, spec.seed)

        # Successors: the cycle successor first, then S-1 Zipf draws without replacement
        # (Gumbel top-k over log-weights of a random ranking), excluding the cycle successor.
        cycle = np.argsort(_uniform(key(1), k), kind="stable")
        cycle_next = np.empty(k, dtype=np.int64)
        cycle_next[cycle] = np.roll(cycle, -1)
        rank_of_state = np.argsort(np.argsort(_uniform(key(2), k), kind="stable"), kind="stable")
        log_w = -spec.zipf * np.log1p(rank_of_state.astype(np.float64))
        extra = np.empty((k, s - 1), dtype=np.int64)
        for lo in range(0, k, 1024):          # rows in chunks: [chunk, K] scores at a time
            rows = np.arange(lo, min(k, lo + 1024))
            bits = random_bits(key(3), rows.astype(np.uint64), k)
            uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
            scores = log_w[None, :] - np.log(-np.log(uniform))          # Gumbel top-k
            scores[np.arange(len(rows)), cycle_next[rows]] = -np.inf
            extra[rows] = np.argsort(-scores, axis=1, kind="stable")[:, : s - 1]
        self.successor_ids = np.concatenate([cycle_next[:, None], extra], axis=1)
        expo = -np.log(_uniform(key(4), k * s).reshape(k, s))
        self.transition_counts = _quantise(expo / expo.sum(1, keepdims=True))

        # Emissions: E distinct tokens per state, Dirichlet(1) probabilities sorted descending.
        token_scores = random_bits(key(5), np.arange(k, dtype=np.uint64), v)
        self.emission_ids = np.argsort(token_scores, axis=1, kind="stable")[:, :e]
        expo = -np.log(_uniform(key(6), k * e).reshape(k, e))
        probs = -np.sort(-expo / expo.sum(1, keepdims=True), axis=1)
        self.emission_counts = _quantise(probs)

        # Dense probability matrices (float64, exact rationals) and the stationary distribution.
        rows = np.repeat(np.arange(k), s)
        self.transition = np.zeros((k, k))
        np.add.at(self.transition, (rows, self.successor_ids.ravel()),
                  self.transition_counts.ravel() / _Q)
        self.emission = np.zeros((k, v))
        np.add.at(self.emission, (np.repeat(np.arange(k), e), self.emission_ids.ravel()),
                  self.emission_counts.ravel() / _Q)
        a = self.transition.T - np.eye(k)
        a[-1, :] = 1.0
        b = np.zeros(k)
        b[-1] = 1.0
        pi = np.linalg.solve(a, b)
        self.stationary = np.clip(pi, 0, None) / np.clip(pi, 0, None).sum()
        self._stationary_cdf = np.cumsum(self.stationary)
        self._stationary_cdf[-1] = 1.0 + 1e-12

        # Sampling tables: state*4096 + 12 random bits -> next state / emitted token.
        index_dtype = np.int32 if k * _Q < 2**31 else np.int64
        self._next_table = np.repeat(self.successor_ids.ravel(), self.transition_counts.ravel()
                                     ).astype(index_dtype)
        self._emit_table = np.repeat(self.emission_ids.ravel(), self.emission_counts.ravel()
                                     ).astype(np.int32)
        self._index_dtype = index_dtype
        self._sparse_transition = None

    @property
    def vocab_size(self) -> int:
        return self.spec.vocab

    # -----------------------------------------------------------------------------------------
    def sample(self, seed: int, shard: int, rows: np.ndarray | int, length: int,
               start: int = 0) -> np.ndarray:
        """Tokens int32 [n_rows, length]: sequences `rows` (indices, or a count from `start`) of
        stream (seed, shard). Deterministic, random access, and a prefix of any longer sample."""
        if np.isscalar(rows):
            rows = np.arange(start, start + int(rows), dtype=np.uint64)
        rows = np.asarray(rows, dtype=np.uint64)
        n = rows.shape[0]
        bits = random_bits(stream_key(seed, shard), rows, length)          # [n, length]
        trans_bits = (bits >> np.uint64(64 - QUANT_BITS)).astype(self._index_dtype).T.copy()
        emit_bits = (bits & np.uint64(_Q - 1)).astype(self._index_dtype)
        u0 = (bits[:, 0] >> np.uint64(11)).astype(np.float64) * 2.0**-53
        states = np.empty((length, n), dtype=self._index_dtype)
        state = np.searchsorted(self._stationary_cdf, u0, side="right").astype(self._index_dtype)
        states[0] = state
        table = self._next_table
        shift = self._index_dtype(QUANT_BITS)
        for t in range(1, length):
            idx = np.left_shift(state, shift)
            idx |= trans_bits[t]
            state = table[idx]
            states[t] = state
        idx = np.left_shift(states.T, shift)
        idx |= emit_bits
        return self._emit_table[idx]

    def sample_states_and_tokens(self, seed: int, shard: int, n: int, length: int):
        """(states, tokens), both [n, length], for tests and analysis."""
        tokens = self.sample(seed, shard, n, length)
        rows = np.arange(n, dtype=np.uint64)
        bits = random_bits(stream_key(seed, shard), rows, length)
        u0 = (bits[:, 0] >> np.uint64(11)).astype(np.float64) * 2.0**-53
        state = np.searchsorted(self._stationary_cdf, u0, side="right")
        states = np.empty((n, length), dtype=np.int64)
        states[:, 0] = state
        for t in range(1, length):
            state = self._next_table[(state << QUANT_BITS) | (bits[:, t] >> np.uint64(52)).astype(np.int64)]
            states[:, t] = state
        return states, tokens

    # -----------------------------------------------------------------------------------------
    def nll(self, tokens: np.ndarray) -> np.ndarray:
        """-log p(x_t | x_<t) float64 [B, L] for tokens [B, L] by the (normalised) forward algorithm;
        position 0 is scored against the stationary emission distribution."""
        import scipy.sparse

        tokens = np.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [batch, length], got shape {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.spec.vocab):
            raise ValueError(f"token ids must be in [0, {self.spec.vocab}) for this language")
        if self._sparse_transition is None:
            self._sparse_transition = scipy.sparse.csr_matrix(self.transition.T)
        trans_t = self._sparse_transition          # [K, K] sparse, transposed: pred^T = T^T filt^T
        emission_t = np.ascontiguousarray(self.emission.T)   # [V, K]
        b, length = tokens.shape
        out = np.empty((b, length))
        pred = np.broadcast_to(self.stationary[:, None], (self.spec.states, b))  # [K, B]
        for t in range(length):
            joint = pred * emission_t[tokens[:, t]].T      # [K, B]
            p = joint.sum(0)
            with np.errstate(divide="ignore"):
                out[:, t] = -np.log(p)           # inf for an impossible token (and after it)
            if t + 1 < length:
                pred = trans_t @ (joint / np.where(p > 0, p, 1.0))
        return out

    def floor_of(self, tokens: np.ndarray) -> float:
        """Exact Bayes-optimal mean loss over the target positions [:, 1:] of [B, seq+1] batches."""
        return float(self.nll(tokens)[:, 1:].mean())

    @functools.lru_cache(maxsize=16)
    def entropy_floor(self, seq_len: int = 128, n_targets: int = 65_536) -> float:
        """Estimated floor (nats/token) for seq_len-token training sequences: the exact optimal loss
        on a fixed held-out sample of about n_targets targets (shard FLOOR_SHARD)."""
        rows = max(1, -(-n_targets // seq_len))
        return self.floor_of(self.sample(0, FLOOR_SHARD, rows, seq_len + 1))

    def unigram_entropy(self) -> float:
        p = self.stationary @ self.emission
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    def bigram_entropy(self) -> float:
        """Exact H(x_t | x_t-1) of the stationary process: the loss of a perfect bigram model."""
        joint = (self.stationary[:, None] * self.emission).T @ self.transition @ self.emission  # [V, V]
        cond = joint / np.maximum(joint.sum(1, keepdims=True), 1e-300)
        mask = joint > 0
        return float(-(joint[mask] * np.log(cond[mask])).sum())

    def effective_states(self) -> float:
        """exp(entropy of the stationary distribution): how many states carry the mass."""
        p = self.stationary[self.stationary > 0]
        return float(np.exp(-(p * np.log(p)).sum()))

    def describe(self, seq_len: int = 128) -> dict[str, float]:
        return {"states": self.spec.states, "vocab": self.spec.vocab,
                "successors": self.spec.successors, "emissions": self.spec.emissions,
                "zipf": self.spec.zipf, "language_seed": self.spec.seed,
                "effective_states": self.effective_states(),
                "unigram_entropy": self.unigram_entropy(), "bigram_entropy": self.bigram_entropy(),
                "entropy_floor": self.entropy_floor(seq_len)}


@functools.lru_cache(maxsize=8)
def language(spec: LanguageSpec) -> SyntheticLanguage:
    """The language for a spec, built once per process (building K=512 takes ~0.1 s)."""
    return SyntheticLanguage(spec)
