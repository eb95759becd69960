"""Frozen configuration dataclasses and their validation.

Every knob of a run lives here, documented under its field. `validate()` on each config
raises a ValueError that names the problem and the fix, before anything compiles or writes.
Configs are plain data: `dataclasses.replace` to vary them; typed checks and `to_dict`/`from_dict`
live in lm.config_fields, `key=value` overrides, config files and the field listing of `--help-config`
in lm.config_io, named model presets in lm.presets (each of those imports this module, never the
other way round).
"""

from __future__ import annotations

import dataclasses

from lm.config_fields import check_fields
from lm.config_fields import check_choice as _check_choice
from lm.config_fields import check_int as _check_int
from lm.config_fields import check_positive as _check_positive
from lm.config_fields import divisors as _divisors

POSITIONS = ("learned", "sinusoidal", "rope", "none")
NORMS = ("rmsnorm", "layernorm")
NORM_POSITIONS = ("pre", "post")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swiglu")
DTYPES = ("auto", "float32", "bfloat16")
ATTENTION_IMPLS = ("einsum", "xla", "cudnn")
SCHEDULES = ("cosine", "wsd", "constant", "linear")
DECAY_SHAPES = ("linear", "cosine", "sqrt")
PARAMETRIZATIONS = ("standard", "mup")

RESUME_CHANGES = ("allow_swap", "init_from", "mesh", "out_dir", "peak_flops", "progress", "tensorboard")
"""The TrainConfig fields that may differ between a run and its resumption, and between a sweep's
plan and a run it finished: none of them changes a number. The mesh only places the same arrays on
other devices (a checkpoint restores under any mesh and process count); out_dir and init_from are
paths (a folder may move; init_from is read only before a run's first checkpoint); peak_flops,
progress and tensorboard only change what is reported; allow_swap only whether a run may start."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer (or an encoder-decoder when `n_encoder_layers > 0`)."""

    vocab_size: int = 256
    """Number of token ids the embedding and unembedding cover."""
    d_model: int = 64
    """Width of the residual stream."""
    n_layers: int = 2
    """Number of decoder blocks."""
    n_heads: int = 4
    """Query heads per attention layer; must divide d_model unless head_dim is set."""
    n_kv_heads: int | None = None
    """Key/value heads (grouped-query attention); None = n_heads (multi-head), 1 = multi-query."""
    head_dim: int | None = None
    """Width of each head; None = d_model // n_heads."""
    d_ff: int | None = None
    """Hidden width of the MLP; None = 4 * d_model (or 8/3 * d_model rounded to 8 for SwiGLU)."""
    max_seq_len: int = 128
    """Context length: the longest sequence the model accepts (size of learned positions)."""
    positions: str = "rope"
    """Position information: 'learned', 'sinusoidal' (added to embeddings), 'rope' or 'none'."""
    rope_theta: float = 10_000.0
    """Base of the rotary frequencies."""
    norm: str = "rmsnorm"
    """'rmsnorm' or 'layernorm'."""
    norm_bias: bool = False
    """Whether LayerNorm has a bias (ignored by RMSNorm)."""
    norm_position: str = "pre"
    """'pre' (GPT-2, Llama) or 'post' (the original Transformer: norm after each residual add)."""
    norm_eps: float = 1e-6
    """Epsilon inside the norm."""
    activation: str = "swiglu"
    """MLP nonlinearity: 'relu', 'gelu' (exact), 'gelu_tanh' (GPT-2) or 'swiglu' (gated, 3 matrices)."""
    use_bias: bool = False
    """Biases on the attention and MLP projections."""
    tie_embeddings: bool = False
    """Unembed with the transposed token embedding instead of a separate matrix."""
    n_encoder_layers: int = 0
    """Encoder blocks for the encoder-decoder variant; 0 = decoder-only."""
    compute_dtype: str = "auto"
    """Activation/matmul dtype: 'auto', 'float32' or 'bfloat16'; parameters, norms, softmax and the
    loss stay float32. 'auto' (lm/precision.py) is made concrete when a run starts, and config.json
    records the result: the dtype a resumed run's folder recorded, bfloat16 on GPUs/TPUs, and on a CPU
    the row of a table of CPU flags and d_model (lm.precision.CPU_TABLE, measured; no timing), since
    the ranking flips between CPUs. Library calls outside a run read the same table."""
    attention_impl: str = "einsum"
    """How attention is computed: 'einsum' (explicit scores + softmax, heads-major; what
    `attention_maps` inspects; on CPU as fast as 'xla' within noise), 'xla'
    (`jax.nn.dot_product_attention` lowered by XLA) or 'cudnn' (its cuDNN flash-attention kernel:
    NVIDIA GPUs with bfloat16 compute only)."""
    remat: bool = False
    """Rematerialise each block in the backward pass (saves memory, costs ~1/3 more compute)."""
    scan_layers: bool = True
    """Scan over a stacked layer axis so compile time stays flat as depth grows."""
    scan_unroll: int = 0
    """Layers per iteration of the scanned layer loop (`lax.scan`'s unroll; the parameters and
    their layout are the same whatever it is). 0 = by platform: every layer on CPU, where the loop
    cost ~10 % of the step (zero-filled stacked buffers, dynamic slices: d256-L4 step 9 % faster,
    the default sweep's d44-d80 10-19 %, BENCHMARKS.md) for a compile that grows with depth; 1 on
    accelerators (one compiled layer body)."""
    init_std: float = 0.02
    """Standard deviation of the normal initialiser; output projections are scaled by 1/sqrt(2 n_layers)."""
    count_only: bool = False
    """A preset meant for parameter/FLOP counting only (e.g. gpt3-175b): refuse to initialise it."""
    parametrization: str = "standard"
    """'standard' (every matrix initialised with init_std, one Adam learning rate) or 'mup'
    (Yang et al. 2022: hidden matrices initialised with init_std / sqrt(m) and trained with Adam
    learning rate lr / m, logits multiplied by mup_output_mult / m, attention q.k / head_dim, with
    m = d_model / mup_base_width; see lm/mup.py). muP makes the best learning rate transfer across
    widths."""
    mup_base_width: int = 64
    """muP only: the width (d_model) at which muP's inits and learning rates equal the standard
    ones (m = 1); it must divide d_model. Tune the learning rate at this width."""
    mup_output_mult: float = 1.0
    """muP only: the output-logit multiplier alpha_output at the base width (logits x alpha / m)."""

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def head_size(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def ff_size(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.activation == "swiglu":
            return max(8, int(round(8 * self.d_model / 3 / 8)) * 8)
        return 4 * self.d_model

    def validate(self) -> "ModelConfig":
        check_fields(self, prefix="model.")
        _check_positive(vocab_size=self.vocab_size, d_model=self.d_model, n_layers=self.n_layers,
                        n_heads=self.n_heads, max_seq_len=self.max_seq_len, init_std=self.init_std,
                        norm_eps=self.norm_eps, rope_theta=self.rope_theta)
        if self.n_encoder_layers < 0:
            raise ValueError(f"n_encoder_layers={self.n_encoder_layers} must be >= 0 (0 = decoder-only)")
        for name in ("n_kv_heads", "head_dim", "d_ff"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}={value} must be positive; set it > 0 or None for the default")
        if self.head_dim is None and self.d_model % self.n_heads:
            good = [h for h in _divisors(self.d_model) if h <= 128]
            raise ValueError(f"n_heads={self.n_heads} does not divide d_model={self.d_model}; "
                             f"pick n_heads in {good} or set head_dim")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_kv_heads={self.kv_heads} does not divide n_heads={self.n_heads}; "
                             f"pick n_kv_heads in {_divisors(self.n_heads)}")
        if self.positions == "rope" and self.head_size % 2:
            raise ValueError(f"rotary positions need an even head size, got {self.head_size}; "
                             "change d_model/n_heads or use positions='learned'")
        _check_choice("positions", self.positions, POSITIONS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("norm_position", self.norm_position, NORM_POSITIONS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("compute_dtype", self.compute_dtype, DTYPES)
        _check_choice("parametrization", self.parametrization, PARAMETRIZATIONS)
        if self.parametrization == "mup":
            _check_int(mup_base_width=self.mup_base_width)
            _check_positive(mup_base_width=self.mup_base_width, mup_output_mult=self.mup_output_mult)
            if self.d_model % self.mup_base_width:
                good = [b for b in _divisors(self.d_model) if b <= self.d_model]
                raise ValueError(f"muP: mup_base_width={self.mup_base_width} does not divide d_model="
                                 f"{self.d_model}; pick a base width in {good} (or widths that are "
                                 f"multiples of {self.mup_base_width})")
        _check_choice("attention_impl", self.attention_impl, ATTENTION_IMPLS)
        if self.scan_unroll < 0:
            raise ValueError(f"scan_unroll={self.scan_unroll} must be >= 0 (0 = by platform, k = k layers "
                             "per loop iteration)")
        return self


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with clipping, a learning-rate schedule and gradient accumulation."""

    learning_rate: float = 3e-3
    """Peak learning rate, reached at the end of warmup."""
    b1: float = 0.9
    """Adam first-moment decay."""
    b2: float = 0.95
    """Adam second-moment decay."""
    eps: float = 1e-8
    """Adam epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay (multiplied by the learning rate, as in AdamW)."""
    decay_norms_biases_embeddings: bool = False
    """Apply weight decay to norm scales, biases and embeddings too (default: matrices only)."""
    clip_norm: float | None = 1.0
    """Global gradient-norm clip; None disables it."""
    schedule: str = "cosine"
    """'cosine' (warmup then cosine to final_lr_frac over the whole run, Chinchilla), 'wsd'
    (warmup-stable-decay), 'constant' (after warmup) or 'linear' (warmup then linear to final)."""
    warmup_steps: int = 20
    """Linear warmup from 0 to the peak."""
    final_lr_frac: float = 0.1
    """Learning rate at the end of the cycle as a fraction of the peak (Chinchilla: 0.1)."""
    decay_frac: float = 0.2
    """WSD only: fraction of the steps spent in the final decay."""
    decay_shape: str = "linear"
    """WSD only: shape of the decay, 'linear', 'cosine' or 'sqrt' (1 - sqrt)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step (the global batch is split into this many)."""

    def validate(self) -> "OptimConfig":
        check_fields(self, prefix="optim.")
        _check_positive(learning_rate=self.learning_rate, eps=self.eps, grad_accum=self.grad_accum)
        for name in ("b1", "b2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ValueError(f"clip_norm={self.clip_norm} must be positive, or None to disable clipping")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be >= 0")
        if not 0 <= self.final_lr_frac <= 1:
            raise ValueError(f"final_lr_frac={self.final_lr_frac} must be in [0, 1]")
        if not 0 < self.decay_frac <= 1:
            raise ValueError(f"decay_frac={self.decay_frac} must be in (0, 1]")
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("decay_shape", self.decay_shape, DECAY_SHAPES)
        return self


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where tokens come from and how they are cut into sequences."""

    source: str = "synthetic"
    """'synthetic' (built-in language with a known entropy floor), 'translation' (paired data for
    encoder-decoder models: a synthetic noisy-channel translation task, see lm.data.paired),
    'tfds:NAME[/CONFIG]' (a prepared TFDS text data set) or 'text:GLOB' (local text files, prepared
    through a project TFDS builder)."""
    seq_len: int = 128
    """Tokens per training sequence; must not exceed the model's max_seq_len."""
    seed: int = 0
    """Seed of the data order (and of the synthetic language's sampling)."""
    train_split: str = "train"
    """Split trained on."""
    eval_split: str = "validation"
    """Held-out split evaluated on (for synthetic data: a disjoint stream)."""
    text_feature: str = "text"
    """Name of the text feature in a TFDS data set."""
    data_dir: str | None = None
    """TFDS data directory (None = TFDS's default, ~/tensorflow_datasets)."""
    tokenizer: str | None = None
    """Path of a sentencepiece model; None = train one beside the data (or none for synthetic)."""
    tokenizer_type: str = "bpe"
    """Type of a sentencepiece model trained here: 'bpe' or 'unigram'."""
    # Synthetic language knobs (see lm.data.synthetic for what they mean).
    synthetic_states: int = 512
    """Hidden states of the synthetic HMM."""
    synthetic_successors: int = 3
    """Successor states per hidden state."""
    synthetic_emissions: int = 2
    """Distinct tokens each state can emit."""
    synthetic_zipf: float = 1.0
    """Zipf exponent of the successor weights (larger = more skewed, easier)."""
    synthetic_language_seed: int = 1234
    """Seed that defines the language itself (its transition and emission tables)."""
    synthetic_vocab: int = 64
    """Tokens of the synthetic language (the model's vocab_size must be at least this)."""
    translation_noise: float = 0.1
    """Translation task only: mean probability that a word is replaced by a random word, in [0, 0.5]."""
    max_documents: int | None = None
    """Text sources only: cap the documents read per split (None = all); for quick trials."""
    source_feature: str | None = None
    """Paired text (lm.data.paired_text): the feature holding the source side, e.g. 'de' of
    tfds:wmt14_translate/de-en. Setting it (or target_feature, or a 'pairs:' source) makes the data
    paired, for encoder-decoder models; None with a 'pairs:' source = 'source'."""
    target_feature: str | None = None
    """Paired text: the feature holding the target side, e.g. 'en'; None with 'pairs:' = 'target'."""
    target_tokenizer: str | None = None
    """Paired text: a sentencepiece model of its own for the target side (then `tokenizer` is the
    source's; target ids follow the source's); None = one model shared by both sides."""
    separate_tokenizers: bool = False
    """Paired text without tokenizer files: train one model per side (vocab_size // 2 pieces each)
    instead of one shared model."""

    @property
    def paired(self) -> bool:
        """Whether this is paired (source, target) data for an encoder-decoder model."""
        return (self.source == "translation" or self.source.startswith("pairs:")
                or self.source_feature is not None or self.target_feature is not None)

    def validate(self) -> "DataConfig":
        check_fields(self, prefix="data.")
        _check_positive(seq_len=self.seq_len)
        if not (self.source in ("synthetic", "translation") or self.source.startswith(("tfds:", "text:", "pairs:", "corpus:"))):
            raise ValueError(f"data source {self.source!r} is not known; use 'synthetic', 'translation', "
                             "'tfds:NAME' (e.g. tfds:tiny_shakespeare), 'text:/path/*.txt' or 'pairs:/path/*.tsv'")
        if (self.source_feature is None) != (self.target_feature is None) and not self.source.startswith("pairs:"):
            raise ValueError("paired text needs both data.source_feature and data.target_feature (e.g. 'de' and "
                             "'en' of tfds:wmt14_translate/de-en)")
        if self.paired and self.source.startswith(("text:", "synthetic")) and self.source != "translation":
            raise ValueError(f"data.source={self.source!r} is single-stream text; paired text comes from "
                             "'tfds:NAME' with source/target features or 'pairs:GLOB'")
        if self.source.startswith(("tfds:", "text:", "pairs:", "corpus:")) and not self.source.split(":", 1)[1]:
            raise ValueError(f"data source {self.source!r} names nothing after the colon")
        if not 0.0 <= self.translation_noise <= 0.5:
            raise ValueError(f"translation_noise={self.translation_noise} is outside [0, 0.5]; pick e.g. 0.1")
        if self.tokenizer_type not in ("bpe", "unigram"):
            raise ValueError(f"tokenizer_type={self.tokenizer_type!r}; pick 'bpe' or 'unigram'")
        if self.max_documents is not None and self.max_documents <= 0:
            raise ValueError(f"max_documents={self.max_documents} must be positive, or None for all")
        _check_positive(synthetic_vocab=self.synthetic_vocab, synthetic_states=self.synthetic_states,
                        synthetic_successors=self.synthetic_successors,
                        synthetic_emissions=self.synthetic_emissions)
        return self


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """A named device mesh. Sizes multiply to the device count; -1 takes the rest."""

    data: int = -1
    """Data-parallel axis: batch split, parameters replicated."""
    fsdp: int = 1
    """Fully-sharded data-parallel axis: batch split and parameters/optimizer state sharded."""
    tensor: int = 1
    """Tensor-parallel axis: heads and MLP hidden units split (Megatron style)."""

    @property
    def axis_names(self) -> tuple[str, str, str]:
        return ("data", "fsdp", "tensor")

    def shape(self, n_devices: int) -> tuple[int, int, int]:
        """The concrete (data, fsdp, tensor) sizes for `n_devices` devices."""
        sizes = [self.data, self.fsdp, self.tensor]
        for name, size in zip(self.axis_names, sizes):
            if size == 0 or size < -1:
                raise ValueError(f"mesh {name}={size}: use a positive size or -1 for 'the rest'")
        if sizes.count(-1) > 1:
            raise ValueError(f"mesh {dict(zip(self.axis_names, sizes))} has more than one -1; "
                             "at most one axis may take the rest of the devices")
        known = 1
        for size in sizes:
            if size != -1:
                known *= size
        if -1 in sizes:
            if n_devices % known:
                raise ValueError(f"mesh sizes {dict(zip(self.axis_names, sizes))} do not divide "
                                 f"the {n_devices} devices; pick sizes whose product divides {n_devices}")
            sizes[sizes.index(-1)] = n_devices // known
        elif known != n_devices:
            raise ValueError(f"mesh data*fsdp*tensor = {known} but there are {n_devices} devices; "
                             f"make the product {n_devices} or set one axis to -1")
        return tuple(sizes)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run: the model, its data, its optimizer, its mesh and the loop's knobs."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    steps: int = 300
    """Optimizer steps."""
    batch_size: int = 32
    """Global batch in sequences (over all devices and processes)."""
    seed: int = 0
    """Seed of the parameter initialisation."""
    eval_every: int = 100
    """Evaluate on the held-out split every this many steps (and at the end); 0 = only at the end."""
    eval_batches: int = 4
    """Batches (of batch_size sequences) per evaluation."""
    log_every: int = 10
    """Log training metrics every this many steps."""
    checkpoint_every: int = 0
    """Save a checkpoint every this many steps (and at the end); 0 = only at the end."""
    checkpoint_steps: tuple[int, ...] = ()
    """Also save a checkpoint after exactly these steps (e.g. the branch points of WSD cooldowns);
    set keep_checkpoints high enough that the ones you need are not rotated away."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (the newest)."""
    out_dir: str = "runs/default"
    """Run directory: config, metrics.jsonl, TensorBoard events, checkpoints, result.json."""
    init_from: str | None = None
    """Start (when out_dir has no checkpoint yet) from another run's checkpoint, 'RUN_DIR@STEP':
    weights, optimizer state, step and data position. Used to branch WSD cooldowns from a
    constant-learning-rate run; the branch's own schedule then applies from STEP on."""
    peak_flops: float | None = None
    """Peak FLOP/s of all devices together for MFU; None = measure a float32 matmul at start-up."""
    tensorboard: bool = True
    """Also write TensorBoard event files."""
    progress: bool = True
    """Show a progress bar on the terminal."""
    allow_swap: bool = False
    """Let a run whose memory estimate (lm.memory) exceeds the available memory start anyway,
    backed by swap (slow); False refuses it before anything is compiled or written."""
    schedule_on_host: bool = False
    """Evaluate the learning-rate schedule on the host and feed each step's rate into the optimizer
    state (optax.inject_hyperparams), so the compiled step does not depend on the run's length:
    runs of one shape share one compilation through the persistent cache (sweeps). Changes the
    optimizer state's structure, so a run cannot switch it when resuming."""

    def __post_init__(self) -> None:
        # JSON gives lists; keep the field a hashable, comparable tuple (its items are checked by validate).
        if isinstance(self.checkpoint_steps, list):
            object.__setattr__(self, "checkpoint_steps", tuple(self.checkpoint_steps))

    def validate(self, n_devices: int | None = None) -> "TrainConfig":
        check_fields(self)
        self.model.validate()
        self.data.validate()
        self.optim.validate()
        if self.model.count_only:
            raise ValueError("this model preset is for parameter/FLOP counting only; pick a trainable preset")
        _check_int(steps=self.steps, batch_size=self.batch_size, eval_every=self.eval_every,
                   eval_batches=self.eval_batches, log_every=self.log_every,
                   checkpoint_every=self.checkpoint_every, keep_checkpoints=self.keep_checkpoints,
                   seed=self.seed, d_model=self.model.d_model, n_layers=self.model.n_layers,
                   n_heads=self.model.n_heads, vocab_size=self.model.vocab_size, seq_len=self.data.seq_len)
        paired, enc_dec = self.data.paired, self.model.n_encoder_layers > 0
        if paired != enc_dec:
            raise ValueError(f"data.source={self.data.source!r} with model.n_encoder_layers="
                             f"{self.model.n_encoder_layers}: encoder-decoder models train on paired data and "
                             "decoder-only models on single streams; set data.source=translation with "
                             "model.n_encoder_layers > 0, or n_encoder_layers=0 with another source")
        if self.data.source in ("synthetic", "translation") and self.data.synthetic_vocab > self.model.vocab_size:
            raise ValueError(f"the synthetic language has {self.data.synthetic_vocab} tokens but model.vocab_size="
                             f"{self.model.vocab_size}; set model.vocab_size >= {self.data.synthetic_vocab}")
        _check_positive(steps=self.steps, batch_size=self.batch_size, eval_batches=self.eval_batches,
                        log_every=self.log_every, keep_checkpoints=self.keep_checkpoints)
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0 = only at the end)")
        if not self.out_dir.strip():
            raise ValueError("out_dir is empty; set out_dir to the run's folder, e.g. out_dir=runs/NAME")
        if self.peak_flops is not None and not self.peak_flops > 0:
            raise ValueError(f"peak_flops={self.peak_flops} must be a positive FLOP/s figure (all devices "
                             "together), or null to measure it at start-up")
        bad_steps = [s for s in self.checkpoint_steps if not 0 < s <= self.steps]
        if bad_steps:
            raise ValueError(f"checkpoint_steps {bad_steps} are outside the run's steps 1..{self.steps}; "
                             "drop them or raise steps")
        if self.init_from is not None:
            run, sep, step = self.init_from.rpartition("@")
            if not sep or not run or not step.isdigit():
                raise ValueError(f"init_from={self.init_from!r} must be 'RUN_DIR@STEP', e.g. runs/const@400")
            if int(step) >= self.steps:
                raise ValueError(f"init_from step {step} is not before the run's end (steps={self.steps})")
        if self.optim.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps={self.optim.warmup_steps} is longer than the run (steps="
                             f"{self.steps}); set optim.warmup_steps <= {self.steps}")
        if self.data.seq_len > self.model.max_seq_len:
            raise ValueError(f"seq_len={self.data.seq_len} is above the model's context "
                             f"max_seq_len={self.model.max_seq_len}; lower seq_len or raise max_seq_len")
        if self.batch_size % self.optim.grad_accum:
            raise ValueError(f"batch_size={self.batch_size} is not divisible by grad_accum="
                             f"{self.optim.grad_accum}; pick a grad_accum in {_divisors(self.batch_size)}")
        if n_devices is not None:
            data, fsdp, _ = self.mesh.shape(n_devices)
            micro = self.batch_size // self.optim.grad_accum
            if micro % (data * fsdp):
                raise ValueError(f"micro-batch {micro} (batch_size/grad_accum) is not divisible by the "
                                 f"data-parallel size data*fsdp={data * fsdp}; use a batch_size that is a "
                                 f"multiple of {data * fsdp * self.optim.grad_accum}")
        return self

