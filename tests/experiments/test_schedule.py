"""The sweep's scheduler: longest first counting compilation, one compilation of a shape at a time."""

from experiments.plan import RunSpec
from experiments.schedule import DEFAULT_COMPILE_S, Scheduler, shape_key
from experiments.shapes import Shape


def spec(run_id: str, d: int, flops: float) -> RunSpec:
    shape = Shape(d_model=d, n_layers=2, n_heads=2, d_ff=4 * d)
    return RunSpec(run_id=run_id, kind="cosine", shape=shape, budget=flops, steps=100, tokens=100 * 512,
                   params=1, params_nonembed=1, flops_per_token=flops / (100 * 512))


def test_plain_longest_first_before_any_run_finished():
    runs = [spec("a", 8, 1e9), spec("b", 16, 5e9), spec("c", 32, 3e9)]
    assert Scheduler().pick(runs, running=[], now=0.0).run_id == "b"
    assert Scheduler().pick([], running=[]) is None


def test_a_shape_being_compiled_is_not_compiled_again_beside_it():
    s = Scheduler()
    first, same, other = spec("big-d32", 32, 9e9), spec("next-d32", 32, 8e9), spec("small-d8", 8, 1e9)
    s.started(first, now=0.0)
    # While d32's first run is within its expected compilation, the other worker takes d8 ...
    assert s.pick([same, other], running=["big-d32"], now=1.0).run_id == "small-d8"
    # ... unless nothing else is left, or the compilation is over (the cache has the programs).
    assert s.pick([same], running=["big-d32"], now=1.0).run_id == "next-d32"
    assert s.pick([same, other], running=["big-d32"], now=DEFAULT_COMPILE_S + 1).run_id == "next-d32"
    assert s.pick([same, other], running=[], now=1.0).run_id == "next-d32"


def test_compilation_counts_in_the_cost_once_runs_have_measured_it():
    s = Scheduler()
    done = spec("done-d32", 32, 4e9)
    s.started(done, now=0.0)
    s.ended(done, {"train_s": 4.0, "wall_s": 12.0})         # 1e-9 s per FLOP, 8 s outside training
    cached, new_shape = spec("d32-more", 32, 6e9), spec("d8-first", 8, 1e9)
    # FLOPs alone would start d32 (6 s) first; d8's first run also compiles (1 s + 8 s): it goes first,
    # so the sweep does not end on a worker compiling while the other waits.
    assert s.cost(cached) == 6.0 and s.cost(new_shape) == 9.0
    assert s.pick([cached, new_shape], running=[], now=100.0).run_id == "d8-first"
    # Shapes finished in an earlier invocation are in the compilation cache: no compile cost.
    assert Scheduler(compiled=[new_shape]).cost(new_shape) == 1e9
    assert shape_key(cached) == ("d32-L2", None)
