"""Sampling from a trained model: a key/value cache, temperature, top-k, top-p, stop tokens, and
the `lm-sample` command.

Generation is chained next-token prediction. Prompts of different lengths share a batch
left-padded to a length bucket (a power of two), pad positions -1, so every row's last prompt
token sits in the same column. One jitted function per (batch, bucket, max_new_tokens) shape
does the rest on the device: prefill the cache with the prompts, sample the first token, then a
`lax.while_loop` feeds one token per step through `lm.model.decode` until every row has hit a
stop token or max_new_tokens. Rows stop independently; outputs are trimmed per row. With
`use_cache=False` each step instead recomputes the whole (fixed-size) sequence: the baseline the
cache is measured against (experiments/bench/generate.py).

Sampling: logits / temperature, then keep the top_k largest (0 = all), then the smallest set
whose probability reaches top_p (1.0 = all), then draw. temperature 0 is greedy (argmax).

    lm-sample runs/default --prompt "3 14 15" --temperature 0.8 --top-k 20     # synthetic: token ids
    lm-sample runs/text --prompt "The king" --top-p 0.9 --num-samples 3
    lm-sample runs/text --chat --prompt "Who sang of bread?" --temperature 0.7

Encoder-decoder models (n_encoder_layers > 0) take a source per prompt (`sources`, lm-sample
--source): the prefill runs the encoder once and caches every decoder layer's cross-attention keys
and values; the steps reuse them. Sources of different lengths share a batch: right-padded, the
padding masked in the encoder's self-attention and in the cross-attention.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lm import model as model_lib
from lm.config import ModelConfig, TrainConfig
from lm.config_fields import from_dict

MIN_BUCKET = 8


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How continuations are drawn."""

    max_new_tokens: int = 64
    """Tokens generated per prompt at most (fewer when a stop token comes first)."""
    temperature: float = 1.0
    """Divides the logits; 0 = greedy (argmax)."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 = no limit."""
    top_p: float = 1.0
    """Keep the smallest set of most likely tokens whose probability reaches top_p; 1.0 = all."""
    seed: int = 0
    """Seed of the draws (the same seed, prompts and model give the same continuations)."""
    stop_tokens: tuple[int, ...] = ()
    """Token ids that end a row's continuation (the stop token itself is not returned)."""

    def validate(self, vocab_size: int | None = None) -> "SamplingConfig":
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be an integer >= 1")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature={self.temperature} must be a finite number >= 0 "
                             "(0 = greedy, 1 = the model's own distribution)")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k={self.top_k} must be an integer >= 0 (0 = no top-k limit)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1] (1.0 = no nucleus limit)")
        for t in self.stop_tokens:
            if not isinstance(t, (int, np.integer)) or t < 0 or (vocab_size is not None and t >= vocab_size):
                raise ValueError(f"stop token {t!r} is not a token id in [0, {vocab_size}); "
                                 "give stop tokens as ids of the model's vocabulary")
        return self


@dataclasses.dataclass(frozen=True)
class Generation:
    tokens: list[list[int]]
    """Generated ids per prompt, cut before the first stop token."""
    finish: list[str]
    """Per prompt: 'stop' (a stop token came) or 'length' (max_new_tokens reached)."""


# ---------------------------------------------------------------------------------------------
# Sampling from logits (pure, jittable).

def filter_logits(logits_BxV: jax.Array, temperature: jax.Array, top_k: jax.Array,
                  top_p: jax.Array) -> jax.Array:
    """logits / temperature with everything outside the top-k and the top-p nucleus set to -inf.
    temperature > 0 (below 1e-6 it acts as 1e-6); top_k 0 = all; ties at a threshold are kept."""
    v = logits_BxV.shape[-1]
    x = logits_BxV.astype(jnp.float32) / jnp.maximum(temperature, 1e-6)
    sorted_BxV = jnp.sort(x, axis=-1)[:, ::-1]
    k = jnp.where(top_k > 0, jnp.minimum(top_k, v), v)
    sorted_BxV = jnp.where(jnp.arange(v) < k, sorted_BxV, -jnp.inf)
    probs = jax.nn.softmax(sorted_BxV, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    n_keep = jnp.maximum(jnp.sum((mass_before < top_p) & (jnp.arange(v) < k), axis=-1), 1)
    threshold_B = jnp.take_along_axis(sorted_BxV, (n_keep - 1)[:, None], axis=-1)
    return jnp.where(x >= threshold_B, x, -jnp.inf)


def sample_token(logits_BxV: jax.Array, key: jax.Array, temperature: jax.Array, top_k: jax.Array,
                 top_p: jax.Array) -> jax.Array:
    """int32 [B]: a draw from the filtered distribution, or the argmax when temperature == 0."""
    greedy = jnp.argmax(logits_BxV, axis=-1)
    drawn = jax.random.categorical(key, filter_logits(logits_BxV, temperature, top_k, top_p), axis=-1)
    return jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# Generation.

def prompt_bucket(length: int) -> int:
    """Prompts are left-padded to a power of two (at least MIN_BUCKET): one compile per bucket."""
    return max(MIN_BUCKET, 1 << (max(length, 1) - 1).bit_length())


def pad_prompts(prompts: Sequence[Sequence[int]], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (tokens [B, width], positions [B, width]); pad tokens are 0 at position -1."""
    tokens = np.zeros((len(prompts), width), np.int32)
    positions = np.full((len(prompts), width), -1, np.int32)
    for b, p in enumerate(prompts):
        tokens[b, width - len(p):] = p
        positions[b, width - len(p):] = np.arange(len(p))
    return tokens, positions


@functools.partial(jax.jit, static_argnames=("cfg", "max_new", "use_cache"))
def _generate(params, tokens_BxP, positions_BxP, knobs, stop_S, key, src_BxS=None, src_mask_BxS=None, *,
              cfg: ModelConfig, max_new: int, use_cache: bool):
    """int32 [B, max_new]: generated ids (columns after a row's stop token are meaningless).
    src_BxS: the sources of an encoder-decoder model (encoded once, by the prefill), right-padded,
    src_mask_BxS marking their real slots; else None."""
    temperature, top_k, top_p = knobs
    b, p = tokens_BxP.shape
    lengths_B = jnp.sum(positions_BxP >= 0, axis=1).astype(jnp.int32)
    src_len = None if src_BxS is None else src_BxS.shape[1]

    if use_cache:
        logits, state = model_lib.decode(params, tokens_BxP, positions_BxP,
                                         model_lib.init_cache(cfg, b, p + max_new, src_len), cfg, src_BxS,
                                         src_mask_BxS)

        def advance(state, tok_B, j):   # feed generated token j (slot p + j); logits for j + 1
            logits, state = model_lib.decode(params, tok_B[:, None], (lengths_B + j)[:, None], state, cfg)
            return logits[:, 0], state
    else:
        empty = model_lib.init_cache(cfg, b, p + max_new, src_len)
        state = (jnp.pad(tokens_BxP, ((0, 0), (0, max_new))),
                 jnp.pad(positions_BxP, ((0, 0), (0, max_new)), constant_values=-1))
        logits, _ = model_lib.decode(params, *state, empty, cfg, src_BxS, src_mask_BxS)

        def advance(state, tok_B, j):   # write token j into the sequence, recompute all of it
            seq_tok, seq_pos = state
            seq_tok = jax.lax.dynamic_update_slice_in_dim(seq_tok, tok_B[:, None], p + j, axis=1)
            seq_pos = jax.lax.dynamic_update_slice_in_dim(seq_pos, (lengths_B + j)[:, None], p + j, axis=1)
            logits, _ = model_lib.decode(params, seq_tok, seq_pos, empty, cfg, src_BxS, src_mask_BxS)
            return jax.lax.dynamic_index_in_dim(logits, p + j, axis=1, keepdims=False), (seq_tok, seq_pos)

    def is_stop(tok_B):
        return jnp.any(tok_B[:, None] == stop_S[None, :], axis=-1)

    first = sample_token(logits[:, p - 1], jax.random.fold_in(key, 0), temperature, top_k, top_p)
    out_BxT = jnp.zeros((b, max_new), jnp.int32).at[:, 0].set(first)

    def cond(carry):
        t, _, _, _, done_B = carry
        return (t < max_new) & ~jnp.all(done_B)

    def body(carry):
        t, tok_B, state, out_BxT, done_B = carry
        logits_BxV, state = advance(state, tok_B, t - 1)
        tok_B = sample_token(logits_BxV, jax.random.fold_in(key, t), temperature, top_k, top_p)
        out_BxT = jax.lax.dynamic_update_slice_in_dim(out_BxT, tok_B[:, None], t, axis=1)
        return t + 1, tok_B, state, out_BxT, done_B | is_stop(tok_B)

    carry = (jnp.ones((), jnp.int32), first, state, out_BxT, is_stop(first))
    return jax.lax.while_loop(cond, body, carry)[3]


def generate(params: Any, cfg: ModelConfig, prompts: Sequence[Sequence[int]],
             sampling: SamplingConfig = SamplingConfig(), *, use_cache: bool = True,
             sources: Sequence[Sequence[int]] | None = None) -> Generation:
    """Continue each prompt (a list of token ids; lengths may differ) under `sampling`.
    Encoder-decoder models also take one source per prompt (`sources`; lengths may differ: they are
    right-padded and the padding masked, so each row decodes as it would alone): the encoder runs
    once and its cross-attention keys/values are cached for the whole continuation."""
    src, src_mask = _check_sources(cfg, sources, len(prompts))
    sampling.validate(cfg.vocab_size)
    prompts = [[int(t) for t in p] for p in prompts]
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("give at least one prompt, each of at least one token")
    for p in prompts:
        if min(p) < 0 or max(p) >= cfg.vocab_size:
            raise ValueError(f"prompt {p[:8]}... holds ids outside the vocabulary [0, {cfg.vocab_size})")
    longest = max(len(p) for p in prompts)
    if longest + sampling.max_new_tokens > cfg.max_seq_len:
        if longest >= cfg.max_seq_len:
            raise ValueError(f"a prompt of {longest} tokens does not fit the model's context "
                             f"max_seq_len={cfg.max_seq_len} with room to generate; shorten it to < "
                             f"{cfg.max_seq_len} tokens")
        raise ValueError(f"prompt ({longest} tokens) + max_new_tokens ({sampling.max_new_tokens}) exceeds "
                         f"the model's context max_seq_len={cfg.max_seq_len}; set max_new_tokens <= "
                         f"{cfg.max_seq_len - longest} or shorten the prompt")
    tokens, positions = pad_prompts(prompts, prompt_bucket(longest))
    stop = np.full(-(-max(len(sampling.stop_tokens), 1) // 8) * 8, -1, np.int32)  # padded: fewer shapes
    stop[:len(sampling.stop_tokens)] = sampling.stop_tokens
    knobs = (jnp.float32(sampling.temperature), jnp.int32(sampling.top_k), jnp.float32(sampling.top_p))
    out = np.asarray(_generate(params, tokens, positions, knobs, stop, jax.random.key(sampling.seed), src, src_mask,
                               cfg=cfg, max_new=sampling.max_new_tokens, use_cache=use_cache))
    result, finish = [], []
    for row in out:
        hits = np.flatnonzero(np.isin(row, stop))
        result.append(row[:hits[0]].tolist() if hits.size else row.tolist())
        finish.append("stop" if hits.size else "length")
    return Generation(result, finish)


def _check_sources(cfg: ModelConfig, sources, n_prompts: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(int32 [B, S] sources right-padded with 0, bool [B, S] mask of their real slots) of an
    encoder-decoder model, checked; (None, None) for decoder-only."""
    if not cfg.n_encoder_layers:
        if sources is not None:
            raise ValueError("sources are for encoder-decoder models; this one is decoder-only (drop them)")
        return None, None
    if sources is None:
        raise ValueError("this model is an encoder-decoder (n_encoder_layers > 0): give one source per "
                         "prompt (generate(..., sources=[[ids], ...]); lm-sample --source)")
    sources = [[int(t) for t in s] for s in sources]
    if len(sources) != n_prompts or any(len(s) == 0 for s in sources):
        raise ValueError(f"give one non-empty source per prompt: {len(sources)} sources for {n_prompts} prompts")
    longest = max(len(s) for s in sources)
    if longest > cfg.max_seq_len:
        raise ValueError(f"a source of {longest} tokens is longer than the encoder's context "
                         f"max_seq_len={cfg.max_seq_len}; shorten it to <= {cfg.max_seq_len} tokens")
    if min(map(min, sources)) < 0 or max(map(max, sources)) >= cfg.vocab_size:
        raise ValueError(f"a source holds ids outside the vocabulary [0, {cfg.vocab_size})")
    src = np.zeros((len(sources), longest), np.int32)
    mask = np.zeros((len(sources), longest), bool)
    for b, s in enumerate(sources):
        src[b, :len(s)], mask[b, :len(s)] = s, True
    return src, mask


# ---------------------------------------------------------------------------------------------
# Loading a run.

@dataclasses.dataclass
class Run:
    directory: str
    step: int
    config: TrainConfig
    params: Any
    tokenizer: Any          # None for synthetic runs (their tokens are plain ids)


def _locate(path: str) -> tuple[str, str, int | None]:
    """(run dir, checkpoints dir, step or None) from a run dir, its checkpoints/ or a step folder."""
    path = os.path.abspath(path)
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return path, os.path.join(path, "checkpoints"), None
    if os.path.basename(path) == "checkpoints" and os.path.isdir(path):
        return os.path.dirname(path), path, None
    if os.path.basename(path).isdigit() and os.path.isdir(os.path.join(path, "state")):
        return os.path.dirname(os.path.dirname(path)), os.path.dirname(path), int(os.path.basename(path))
    hint = ""
    if os.path.isdir(os.path.join(path, "runs")):         # a sweep folder: name one of its runs
        runs = sorted(d for d in os.listdir(os.path.join(path, "runs"))
                      if os.path.isdir(os.path.join(path, "runs", d, "checkpoints")))
        hint = f"; it looks like a sweep folder, pick one of its runs: {[f'{path}/runs/{r}' for r in runs[:5]]}"
    raise ValueError(f"{path} holds no checkpoints: pass a run directory written by lm-train or the sweep "
                     f"runner (it has checkpoints/<step>/), its checkpoints/ folder or one checkpoints/<step>/{hint}")


def _tokenizer(cfg: TrainConfig, run_dir: str, override: str | None):
    from lm.data import tokenizer as tok
    if override:
        return tok.load_tokenizer(override)
    if cfg.data.source in ("synthetic", "translation"):   # plain token ids
        return None
    if cfg.data.paired:
        return _pair_tokenizers(cfg, run_dir)
    candidates = []
    if cfg.data.tokenizer == tok.BYTE:
        return tok.ByteTokenizer()
    if cfg.data.tokenizer:
        candidates += [cfg.data.tokenizer, os.path.join(run_dir, cfg.data.tokenizer)]
    candidates.append(os.path.join(run_dir, "tokenizer.model"))
    for c in candidates:
        if os.path.isfile(c):
            return tok.SentencePieceTokenizer.load(c)
    raise ValueError(f"the run in {run_dir} trained on {cfg.data.source} but no tokenizer is found at "
                     f"{candidates}; pass --tokenizer PATH (the sentencepiece .model it trained with)")


def _pair_tokenizers(cfg: TrainConfig, run_dir: str):
    """A paired-text run's tokenizers, as lm-train copied them into the run folder: tokenizer.model
    (the source side, or both when shared) and target_tokenizer.model (separate models)."""
    from lm.data import tokenizer as tok
    from lm.data.paired_text import PairTokenizers
    separate = cfg.data.separate_tokenizers or cfg.data.target_tokenizer is not None
    paths = [os.path.join(run_dir, "tokenizer.model")] + (
        [os.path.join(run_dir, "target_tokenizer.model")] if separate else [])
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"the paired-text run in {run_dir} lacks its tokenizer file(s) {missing}; copy the "
                         "sentencepiece models it trained with there")
    source = tok.SentencePieceTokenizer.load(paths[0])
    if not separate:
        return PairTokenizers(source, source, 0)
    return PairTokenizers(source, tok.SentencePieceTokenizer.load(paths[1]), source.vocab_size)


def _sample_pairs(run: Run, prompts: Sequence[str], sources: Sequence[str] | None, sampling: SamplingConfig,
                  num_samples: int, use_cache: bool) -> list[dict[str, Any]]:
    """Translations on a paired-text run: each source text through the source tokenizer into the
    encoder; the decoder starts at BOS plus the prompt's target pieces (usually none: --prompt '')
    and stops at the target side's end of sentence; continuations decoded by the target tokenizer."""
    toks = run.tokenizer
    if not sources or len(sources) != len(prompts):
        raise ValueError(f"an encoder-decoder run on paired text needs one --source text per --prompt (the "
                         f"prompt is the start of the target, usually ''): got {len(sources or [])} source(s) "
                         f"for {len(prompts)} prompt(s)")
    off, eos = toks.target_offset, toks.target_offset + toks.target.eos_id
    encoded = [[toks.bos_id] + [t + off for t in toks.target.encode(p)] for p in prompts]
    srcs = [list(toks.source.encode(s)) for s in sources]
    sampling = dataclasses.replace(sampling, stop_tokens=tuple(dict.fromkeys([*sampling.stop_tokens, eos])))
    gen = generate(run.params, run.config.model, [e for e in encoded for _ in range(num_samples)], sampling,
                   use_cache=use_cache, sources=[s for s in srcs for _ in range(num_samples)])
    rows = []
    for i, (ids, finish) in enumerate(zip(gen.tokens, gen.finish)):
        text = toks.target.decode([t - off for t in ids if t >= off and t != eos])
        rows.append({"prompt": prompts[i // num_samples], "source": sources[i // num_samples],
                     "continuation": text, "tokens": ids, "finish": finish})
    return rows


def load_run(path: str, step: int | None = None, tokenizer: str | None = None,
             report=None) -> Run:
    """The parameters (only: no optimizer state is read) of a run's newest intact checkpoint (or
    `step`), its TrainConfig (config.json, else the checkpoint's own metadata) and its tokenizer, if
    any. Checkpoints are verified against their manifests (lm.checkpoint); a corrupt one is
    reported through `report` in one line and the next older one is used (never moved: a reader
    does not change the run). Parameters land on the first device."""
    import orbax.checkpoint as ocp

    from lm.checkpoint import Checkpoints
    run_dir, ckpt_dir, located = _locate(path)
    step = located if step is None else step
    ckpts = Checkpoints(ckpt_dir, read_only=True)
    steps = ckpts.all_steps()
    if not steps:
        raise ValueError(f"no finished checkpoint in {ckpt_dir}; train the run first (lm-train writes one "
                         "at the end, and every checkpoint_every steps)")
    if step is not None and step not in steps:
        raise ValueError(f"{ckpt_dir} has no checkpoint at step {step}; it has steps {steps}")
    config_path = os.path.join(run_dir, "config.json")
    if os.path.isfile(config_path):
        with open(config_path) as f:
            raw = json.load(f)
    else:
        raw = ckpts.load(step or steps[-1], lambda s: ckpts.restore_meta(s))["config"]
    cfg = from_dict(TrainConfig, raw)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {"params": jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                                       model_lib.abstract_params(cfg.model))}

    def params_at(s: int):
        return ckpts.manager.restore(s, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
            partial_restore=True)))["state"]["params"]

    try:
        if step is not None:
            found = (step, ckpts.load(step, params_at))
        else:
            found = ckpts.restore_newest_good(params_at, report or (lambda line: print(
                f"lm-sample: {line}; trying the next older one", file=sys.stderr, flush=True)))
            if found is None:
                raise ValueError(f"no intact checkpoint in {ckpt_dir} (steps {steps} are all corrupt); "
                                 "train the run again (lm-train --restart)")
    finally:
        ckpts.manager.close()
    return Run(run_dir, found[0], cfg, found[1], _tokenizer(cfg, run_dir, tokenizer))


# ---------------------------------------------------------------------------------------------
# lm-sample.

def _parse_ids(text: str, vocab: int, what: str = "--prompt") -> list[int]:
    try:
        ids = [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"{what} {text!r}: this run trained on synthetic tokens (no tokenizer), so give "
                         f"token ids, e.g. {what} '3 14 15'") from None
    if not ids:
        raise ValueError(f"{what} {text!r} holds no token id; give at least one, e.g. {what} '3'")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise ValueError(f"{what} {text!r} holds ids {bad} outside the vocabulary [0, {vocab}); "
                         f"give {what} ids below {vocab}")
    return ids


@dataclasses.dataclass(frozen=True)
class _Prompts:
    """Prompts as the model takes them: `texts` (rendered through a chat template where asked),
    `ids` (one list per prompt), `sources` (id lists, encoder-decoder runs), what stops a sample."""
    texts: list[str]
    ids: list[list[int]]
    sources: list[list[int]] | None
    stop_tokens: list[int]
    stop_strings: list[str]
    template: Any


def _encode_prompts(run: Run, prompts: Sequence[str], chat: bool, template: str, system: str | None,
                    stop: Sequence[str], stop_tokens: Sequence[int], sources: Sequence[str] | None) -> _Prompts:
    """Token ids of the prompts and the stop tokens: parsed ids for synthetic runs (no tokenizer),
    else encoded text, each prompt a new document (training text had EOS before every document)."""
    from lm import chat as chat_lib
    tok, vocab = run.tokenizer, run.config.model.vocab_size
    stop_tokens, stop_strings, texts = list(stop_tokens), list(stop), list(prompts)
    if tok is None:
        if chat:
            raise ValueError("--chat needs a text model; this run trained on synthetic tokens (no tokenizer)")
        stop_tokens += [_parse_ids(s, vocab, "--stop")[0] for s in stop]
        parsed = None if sources is None else [_parse_ids(s, vocab, "--source") for s in sources]
        return _Prompts(texts, [_parse_ids(p, vocab) for p in prompts], parsed, stop_tokens, [], None)
    if sources is not None:
        raise ValueError("--source is for encoder-decoder runs on paired token ids; this run has a tokenizer")
    tmpl = None
    if chat:
        tmpl = chat_lib.get_template(template)
        texts = [tmpl.render([{"role": "user", "content": p}], system=system) for p in prompts]
        stop_strings += list(tmpl.stop)
    for s in stop_strings:           # a stop string that is one token also stops the loop early
        ids = tok.encode(s)
        if len(ids) == 1:
            stop_tokens.append(ids[0])
    stop_tokens.append(tok.eos_id)   # the end of a document
    return _Prompts(texts, [[tok.eos_id] + tok.encode(p) for p in texts], None, stop_tokens, stop_strings, tmpl)


def sample_run(run: Run, prompts: Sequence[str], sampling: SamplingConfig, *, num_samples: int = 1,
               chat: bool = False, template: str = "transcript", system: str | None = None,
               stop: Sequence[str] = (), use_cache: bool = True,
               sources: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Continuations of text prompts (or id strings for synthetic runs): one dict per (prompt,
    sample) with prompt, continuation (text, or ids), tokens, finish. Encoder-decoder runs (the
    translation task) take one source per prompt, as id strings like the prompts."""
    from lm import chat as chat_lib
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1")
    from lm.data.paired_text import PairTokenizers
    if isinstance(run.tokenizer, PairTokenizers):
        if chat or stop:
            raise ValueError("--chat and --stop are for decoder-only text runs; a paired-text run stops at the "
                             "target's end of sentence")
        return _sample_pairs(run, prompts, sources, sampling, num_samples, use_cache)
    enc = _encode_prompts(run, prompts, chat, template, system, stop, sampling.stop_tokens, sources)
    sampling = dataclasses.replace(sampling, stop_tokens=tuple(dict.fromkeys(int(t) for t in enc.stop_tokens)))
    batch = [ids for ids in enc.ids for _ in range(num_samples)]
    if enc.sources is not None and len(enc.sources) != len(enc.ids):
        raise ValueError(f"give one --source per --prompt: {len(enc.sources)} sources for {len(enc.ids)} prompts")
    src_batch = None if enc.sources is None else [s for s in enc.sources for _ in range(num_samples)]
    try:
        gen = generate(run.params, run.config.model, batch, sampling, use_cache=use_cache, sources=src_batch)
    except ValueError as e:
        if enc.template is None or "context" not in str(e):
            raise
        raise ValueError(f"{e} (with --chat the template's text and the system prompt count too: try a "
                         "shorter --system, or --system '' for none)") from None
    rows = []
    for i, (ids, finish) in enumerate(zip(gen.tokens, gen.finish)):
        prompt = enc.texts[i // num_samples]
        if run.tokenizer is None:
            rows.append({"prompt": prompt, "continuation": ids, "tokens": ids, "finish": finish})
            continue
        text, hit = chat_lib.cut_at_stop(run.tokenizer.decode(ids), enc.stop_strings)
        rows.append({"prompt": prompt, "continuation": text.strip() if enc.template is not None else text,
                     "tokens": ids, "finish": "stop" if hit else finish})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lm-sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a run directory (or its checkpoints/ or checkpoints/<step>/)")
    parser.add_argument("--prompt", action="append", required=True,
                        help="text to continue (token ids like '3 14 15' for synthetic runs); repeat for a batch")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=0, help="0 = no limit")
    parser.add_argument("--top-p", type=float, default=1.0, help="1.0 = no limit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=1, help="continuations per prompt")
    parser.add_argument("--stop", action="append", default=[],
                        help="a string that ends a continuation (a token id for synthetic runs); repeatable")
    parser.add_argument("--source", action="append",
                        help="encoder-decoder runs: the source to translate, one per --prompt: ids for the "
                             "synthetic translation task (the prompt's '0' is BOS), text for paired-text runs "
                             "(the prompt is the start of the target, usually '')")
    parser.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    parser.add_argument("--tokenizer", help="sentencepiece .model (or 'byte') instead of the run's own")
    parser.add_argument("--chat", action="store_true", help="wrap each prompt as a user turn of a chat template")
    parser.add_argument("--template", default="transcript", help="built-in chat template name or a JSON file")
    parser.add_argument("--system", help="system prompt for --chat (default: the template's)")
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole sequence every step")
    parser.add_argument("--json", action="store_true", help="print one JSON object per continuation")
    args = parser.parse_args(argv)
    try:
        sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, seed=args.seed).validate()
        run = load_run(args.checkpoint, args.step, args.tokenizer)
        print(f"# {run.directory} step {run.step}; temperature={sampling.temperature} top_k={sampling.top_k} "
              f"top_p={sampling.top_p} seed={sampling.seed}", file=sys.stderr, flush=True)
        rows = sample_run(run, args.prompt, sampling, num_samples=args.num_samples, chat=args.chat,
                          template=args.template, system=args.system, stop=args.stop,
                          use_cache=not args.no_cache, sources=args.source)
    except (ValueError, FileNotFoundError) as e:
        print(f"lm-sample: error: {e}", file=sys.stderr)
        return 2
    for i, row in enumerate(rows):
        if args.json:
            print(json.dumps(row))
            continue
        cont = row["continuation"]
        shown = " ".join(map(str, cont)) if isinstance(cont, list) else cont
        print(f"--- prompt {i // args.num_samples + 1}, sample {i % args.num_samples + 1} "
              f"({row['finish']}, {len(row['tokens'])} tokens) ---")
        print(f"{row['prompt']}{' | ' if isinstance(cont, list) else ''}{shown}" if not args.chat else shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
