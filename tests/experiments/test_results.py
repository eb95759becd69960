"""The results table: append-only rows, torn last lines ignored and repaired, first row per run wins."""

import json

import pytest

from experiments import results


def _row(run_id, loss=1.0, status="completed"):
    return {"run_id": run_id, "loss": loss, "status": status}


def test_append_read_repair(tmp_path):
    results.append_row(str(tmp_path), _row("a"))
    results.append_row(str(tmp_path), _row("b", 2.0))
    path = tmp_path / results.RESULTS_FILE
    with open(path, "ab") as f:              # a crash mid-append leaves a torn last line
        f.write(b'{"run_id": "c", "lo')
    assert [r["run_id"] for r in results.read_rows(str(tmp_path))] == ["a", "b"]
    results.repair(str(tmp_path))
    results.append_row(str(tmp_path), _row("c", 3.0))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["a", "b", "c"]
    results.append_row(str(tmp_path), _row("a", 9.0))     # never happens, but readers keep the first
    assert [r["loss"] for r in results.read_rows(str(tmp_path))] == [1.0, 2.0, 3.0]


def test_a_torn_line_in_the_middle_is_an_error(tmp_path):
    (tmp_path / results.RESULTS_FILE).write_text('{"run_id": "a"}\n{"run_id"\n{"run_id": "b"}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        results.read_rows(str(tmp_path))


def test_load_results_frame_and_fit_filter(tmp_path):
    results.append_row(str(tmp_path), _row("a"))
    results.append_row(str(tmp_path), _row("b", None, "diverged"))
    frame = results.load_results(str(tmp_path))
    assert list(frame["run_id"]) == ["a", "b"]
    assert list(results.load_results(str(tmp_path), fit_only=True)["run_id"]) == ["a"]
    with pytest.raises(ValueError, match="not a directory"):
        results.load_results(str(tmp_path / "nope"))


def test_curve_from_metrics_tolerates_resume_duplicates(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 10, "eval_loss": 3.0}\n{"step": 10, "loss": 3.1}\n{"step": 20, "eval_loss": 2.5}\n'
        '{"step": 20, "eval_loss": 2.5}\n{"step": 30, "eval')
    from lm.metrics import read_eval_curve
    assert read_eval_curve(str(tmp_path / "metrics.jsonl"), 4) == [{"step": 10, "tokens": 40, "eval_loss": 3.0},
                                                                   {"step": 20, "tokens": 80, "eval_loss": 2.5}]


@pytest.mark.parametrize("bad, why", [(b'{"loss": 1.0}', "has no run_id"), (b'{"run_id"', "is not JSON"),
                                      (b'[1, 2]', "is not a JSON object")])
def test_a_bad_line_names_the_line_and_the_fix_and_repair_moves_it_aside(tmp_path, bad, why):
    results.append_row(str(tmp_path), _row("a"))
    with open(tmp_path / results.RESULTS_FILE, "ab") as f:
        f.write(bad + b"\n")
    results.append_row(str(tmp_path), _row("b"))
    with pytest.raises(ValueError, match=f"line 2 {why}; run `lm-sweep repair {tmp_path}`.* or delete line 2"):
        results.read_rows(str(tmp_path))
    assert results.repair_table(str(tmp_path)) == [(2, why)]
    assert [r["run_id"] for r in results.read_rows(str(tmp_path))] == ["a", "b"]
    assert (tmp_path / results.REJECTED_FILE).read_bytes() == bad + b"\n"      # kept, never deleted


def test_rows_are_strict_json(tmp_path):
    results.append_row(str(tmp_path), {"run_id": "a", "loss": float("nan"), "train_loss": float("inf"),
                                       "status": "diverged"})
    text = (tmp_path / results.RESULTS_FILE).read_text()
    assert "NaN" not in text and "Infinity" not in text
    row = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert row["loss"] is None and row["nonfinite"] == ["loss", "train_loss"]
