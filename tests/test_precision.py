"""compute_dtype='auto': the platform and CPU-flag table (deterministic: no timing), the opt-in probe,
and runs that record the concrete dtype and resume with it (a run recorded before 'auto' existed keeps
its bfloat16)."""

import dataclasses
import json
import os
import types

import numpy as np
import pytest

from lm import precision
from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.train import train


def tiny_run(out_dir, **model) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2, max_seq_len=16, d_ff=32, **model),
        data=DataConfig(seq_len=16), optim=OptimConfig(learning_rate=1e-2, warmup_steps=1),
        steps=2, batch_size=8, eval_every=0, eval_batches=1, log_every=1, out_dir=str(out_dir),
        peak_flops=1e11, progress=False, tensorboard=False)


def _recorded(run_dir) -> str:
    with open(os.path.join(run_dir, "config.json")) as f:
        return json.load(f)["model"]["compute_dtype"]


AVX512_BF16_EPYC = frozenset("fpu sse2 fma avx avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 "
                             "avx512_vnni".split())
AVX2_VM = frozenset("fpu sse2 fma avx avx2".split())
SAPPHIRE_RAPIDS = AVX512_BF16_EPYC | {"amx_bf16", "amx_tile", "amx_int8"}
GRAVITON3 = frozenset("fp asimd sve bf16 i8mm".split())


@pytest.fixture
def no_timing(monkeypatch):
    """Make every timing path of lm.precision raise: 'auto' must not reach one."""
    def boom(*args, **kwargs):
        raise AssertionError("compute_dtype='auto' ran timing code")
    monkeypatch.setattr(precision, "probe", boom)
    monkeypatch.setattr(precision, "_mlp_block_grad", boom)
    monkeypatch.setattr(precision, "time", types.SimpleNamespace(perf_counter=boom, time=boom))


def test_auto_is_the_default_and_follows_the_platform_table(no_timing):
    cfg = ModelConfig()
    assert cfg.validate().compute_dtype == "auto"
    for accelerator in ("gpu", "cuda", "rocm", "tpu"):
        assert precision.dtype_name(cfg, accelerator) == "bfloat16"
        choice = precision.resolve("auto", platform=accelerator)
        assert (choice.dtype, choice.by, choice.probe, choice.cpu) == ("bfloat16", "platform", None, None)
    assert precision.dtype_name(dataclasses.replace(cfg, compute_dtype="bfloat16"), "cpu") == "bfloat16"
    assert precision.resolve("float32", recorded="bfloat16", platform="gpu").by == "explicit"
    assert precision.resolve("auto", recorded="bfloat16", platform="cpu").record() == {
        "dtype": "bfloat16", "by": "recorded", "platform": "cpu", "probe": None, "cpu": None}
    with pytest.raises(ValueError, match=r"compute_dtype='fp16' is not known; pick one of \['auto'"):
        ModelConfig(compute_dtype="fp16").validate()


@pytest.mark.parametrize("flags, d_model, dtype, rule", [
    (AVX512_BF16_EPYC, 64, "float32", "avx512_bf16"),          # small steps: float32 as fast there
    (AVX512_BF16_EPYC, 255, "float32", "avx512_bf16"),
    (AVX512_BF16_EPYC, 256, "bfloat16", "avx512_bf16 d_model>=256"),   # lm.dots: 1.17-1.22x d256-d512
    (AVX512_BF16_EPYC, 1024, "bfloat16", "avx512_bf16 d_model>=256"),
    (SAPPHIRE_RAPIDS, 512, "bfloat16", "avx512_bf16 d_model>=256"),    # AMX unmeasured: its avx512_bf16 row
    (AVX2_VM, 64, "float32", "avx2 -avx512f"),                 # small steps: float32 faster there
    (AVX2_VM, 255, "float32", "avx2 -avx512f"),
    (AVX2_VM, 256, "bfloat16", "avx2 -avx512f d_model>=256"),  # 1.34-1.56x at d256-d512
    (AVX2_VM | {"avx512f"}, 512, "float32", None),             # AVX-512 without BF16: unmeasured
    (GRAVITON3, 512, "float32", None),                         # ARM: unmeasured
    (frozenset(), 512, "float32", None),                       # no /proc/cpuinfo (not Linux)
])
def test_the_cpu_table_maps_flag_sets_to_dtypes(no_timing, flags, d_model, dtype, rule):
    assert precision.table_dtype("cpu", d_model, flags) == dtype
    choice = precision.table_choice("cpu", d_model, flags)
    assert (choice.dtype, choice.by, choice.probe) == (dtype, "table", None)
    assert choice.cpu == {"flags": sorted(flags & precision.TABLE_FLAGS), "d_model": d_model, "rule": rule}
    assert precision.table_dtype("gpu", d_model, flags) == "bfloat16"       # flags are a CPU's only


def test_auto_reads_this_machines_flags_and_never_times(no_timing):
    flags = precision.cpu_flags()
    for d_model in (8, 80, 256, 512):
        choice = precision.resolve("auto", platform="cpu", tokens=512, d_model=d_model, d_ff=4 * d_model)
        assert choice.dtype == precision.table_dtype("cpu", d_model, flags) and choice.by == "table"
        assert choice == precision.resolve("auto", platform="cpu", d_model=d_model)   # same every time
        assert precision.dtype_name(ModelConfig(d_model=d_model), "cpu") == choice.dtype


def test_cpu_flags_are_parsed_from_cpuinfo_text(tmp_path):
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu AVX2 avx512_bf16\n\nprocessor\t: 1\nflags : sse\n"
    assert precision.parse_cpu_flags(x86) == {"fpu", "avx2", "avx512_bf16"}              # first processor
    assert precision.parse_cpu_flags("processor : 0\nFeatures : fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert precision.parse_cpu_flags("no flags here") == frozenset()
    path = tmp_path / "cpuinfo"
    path.write_text(x86)
    assert precision.cpu_flags(str(path)) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_the_opt_in_probe_times_both_dtypes_and_applies_its_margin():
    choice = precision.probe(64, 16, 64, "cpu")
    assert choice.by == "probe" and choice.dtype in precision.CONCRETE
    p = choice.probe
    assert (p["rows"], p["d_model"], p["d_ff"]) == (64, 16, 64)
    assert p["float32_s"] > 0 and p["bfloat16_s"] > 0
    assert (choice.dtype == "bfloat16") == (p["float32_s"] >= precision.MARGIN * p["bfloat16_s"])
    assert precision.probe(64, 16, 64, "cpu") is choice                                # cached
    assert precision.probe_tokens(10**6, 512, 2048) == precision.MIN_PROBE_TOKENS      # wide: capped FLOPs
    assert precision.probe_tokens(10**6, 16, 64) == precision.MAX_PROBE_TOKENS


def test_library_calls_with_auto_use_the_table_dtype():
    import jax
    from lm.memory import estimate
    from lm.model import abstract_params, forward
    cfg = tiny_run("unused").model
    params = abstract_params(cfg)
    tokens = jax.ShapeDtypeStruct((2, 8), np.int32)

    def traced(model):
        return str(jax.make_jaxpr(lambda p, t: forward(p, t, model))(params, tokens))

    assert "bf16" not in traced(cfg) and "bf16" in traced(dataclasses.replace(cfg, compute_dtype="bfloat16"))
    sizes = {dt: estimate(dataclasses.replace(tiny_run("x"), model=dataclasses.replace(cfg, compute_dtype=dt)),
                          1).activations for dt in ("auto", "float32", "bfloat16")}
    assert sizes["auto"] == sizes["float32"] > sizes["bfloat16"]           # on CPU


def test_cudnn_check_reads_auto_as_bfloat16_on_gpus():
    from lm.step import check_attention_backend
    gpu_mesh = types.SimpleNamespace(devices=np.array([types.SimpleNamespace(platform="gpu")]))
    check_attention_backend(ModelConfig(attention_impl="cudnn"), gpu_mesh)
    with pytest.raises(ValueError, match="needs compute_dtype='bfloat16'"):
        check_attention_backend(ModelConfig(attention_impl="cudnn", compute_dtype="float32"), gpu_mesh)


def test_a_run_with_auto_records_its_dtype_and_resumes_with_it(tmp_path, no_timing):
    cfg = tiny_run(tmp_path / "run")
    first = train(cfg)
    dtype = _recorded(cfg.out_dir)
    assert dtype == precision.table_dtype("cpu", 16) and first["compute_dtype_choice"]["dtype"] == dtype
    assert first["compute_dtype_choice"]["by"] == "table"                 # CPU
    assert train(cfg)["status"] == "completed"          # the rerun passes the resume check (no "different config")
    resolved, choice = precision.resolve_train_config(cfg)
    assert resolved.model.compute_dtype == dtype and choice.record() == {
        "dtype": dtype, "by": "recorded", "platform": "cpu", "probe": None, "cpu": None}
    other = "float32" if dtype == "bfloat16" else "bfloat16"
    with pytest.raises(ValueError, match=r"different config \(fields \['model.compute_dtype'\] differ from"):
        train(tiny_run(tmp_path / "run", compute_dtype=other))           # an explicit change is refused


def test_an_old_bfloat16_run_resumed_with_the_default_keeps_bfloat16(tmp_path):
    from lm.config_io import save_json
    from lm.train import _check_resumable
    old = tiny_run(tmp_path / "run", compute_dtype="bfloat16")          # what the old default recorded
    os.makedirs(old.out_dir)
    save_json(old, os.path.join(old.out_dir, "config.json"))
    resolved, choice = precision.resolve_train_config(tiny_run(tmp_path / "run"))   # today's default: 'auto'
    assert (choice.dtype, choice.by) == ("bfloat16", "recorded") and resolved == old
    _check_resumable(resolved)                                           # what train() checks next
    branch = dataclasses.replace(tiny_run(tmp_path / "branch"), init_from=f"{old.out_dir}@1")
    assert precision.resolve_train_config(branch)[0].model.compute_dtype == "bfloat16"   # keeps its trunk's
