"""The verdict's comparisons and the replay's choices that need no kernel."""

from __future__ import annotations

import math

import pytest

from nbtrack.capture.notebook import cell_source
from nbtrack.models import Section, Snapshot
from nbtrack.replay.notebooks import choose_mode, ensure_tracked, history_to_notebook
from nbtrack.replay.result import ReplayResult, parse_value
from nbtrack.replay.verdict import (
    DIVERGED,
    EXIT_CODES,
    FAILED,
    REPRODUCED,
    UNVERIFIED,
    compare_metrics,
    compare_outputs,
    compare_params,
    count_evidence,
    decide,
    summarize,
    vary_metrics,
)
from nbtrack.track.tracker import produced_outputs


def _row(rows: list[dict], name: str) -> dict:
    return next(r for r in rows if r["name"] == name)


def test_integers_must_match_exactly_and_floats_within_1e9() -> None:
    rows = compare_metrics(
        {"rows": 2000.0, "acc": 0.8, "loss": 0.5, "gone": 1.0},
        {"rows": 2001.0, "acc": 0.8 * (1 + 1e-12), "loss": 0.5 * (1 + 1e-6), "new": 2.0},
    )
    assert not _row(rows, "rows")["ok"] and _row(rows, "rows")["tolerance"] == 0.0
    assert _row(rows, "acc")["ok"]
    assert not _row(rows, "loss")["ok"]
    assert not _row(rows, "gone")["ok"] and _row(rows, "gone")["replayed"] is None
    assert not _row(rows, "new")["ok"] and _row(rows, "new")["original"] is None
    assert math.isclose(_row(rows, "rows")["difference"], 1.0)


def test_tolerances_from_the_user_win() -> None:
    rows = compare_metrics(
        {"acc": 0.80, "loss": 0.50}, {"acc": 0.81, "loss": 0.52}, tolerance=0.02, per_metric={"loss": 0.01}
    )
    assert _row(rows, "acc")["ok"] and _row(rows, "acc")["tolerance"] == 0.02
    assert not _row(rows, "loss")["ok"] and _row(rows, "loss")["tolerance"] == 0.01


def test_nan_reproduces_nan() -> None:
    assert compare_metrics({"x": math.nan}, {"x": math.nan})[0]["ok"]
    assert not compare_metrics({"x": math.nan}, {"x": 1.0})[0]["ok"]


def test_params_and_outputs() -> None:
    params = compare_params({"alpha": "0.1", "seed": "1"}, {"alpha": "0.5", "seed": "2"}, {"alpha"})
    assert _row(params, "alpha")["ok"] and _row(params, "alpha")["overridden"]
    assert not _row(params, "seed")["ok"]
    outputs = compare_outputs(
        [{"path": "model.pkl", "after": "aa"}, {"path": "report.csv", "after": "bb"}],
        [{"path": "model.pkl", "after": "aa"}],
    )
    assert [o["ok"] for o in outputs] == [True, False]
    line = summarize([], params, outputs)
    assert line == "param seed 1 -> 2, output report.csv changed"


def test_produced_outputs_are_what_changed_during_the_run() -> None:
    before = Section(
        "data",
        data={
            "outputs": [
                {"path": "in.csv", "hash": "1", "status": "clean"},
                {"path": "model.pkl", "hash": "2", "status": "missing"},
            ]
        },
    )
    after = Section(
        "data",
        data={
            "outputs": [
                {"path": "in.csv", "hash": "1", "status": "clean", "hash_name": "md5"},
                {
                    "path": "model.pkl",
                    "hash": "2",
                    "status": "modified",
                    "workspace_hash": "3",
                    "hash_name": "md5",
                },
            ]
        },
    )
    assert produced_outputs(before, after) == [
        {"path": "model.pkl", "hash_name": "md5", "before": None, "after": "3"}
    ]


def _snap(**notebook: object) -> Snapshot:
    return Snapshot(sections={"notebook": Section("notebook", "ok", None, dict(notebook))})


def test_mode_auto_follows_how_the_run_was_executed() -> None:
    assert choose_mode(_snap(stored=True, out_of_order=False), "auto")[0] == "notebook"
    mode, why = choose_mode(
        _snap(stored=True, out_of_order=True, out_of_order_reasons=["code cell 2 ran again"]), "auto"
    )
    assert mode == "history" and "code cell 2 ran again" in why
    mode, why = choose_mode(_snap(stored=True, out_of_order=False, edited_after_execution=[3]), "auto")
    assert mode == "history" and "3" in why
    mode, why = choose_mode(_snap(stored=False, stored_reason="notebook is 60000000 bytes"), "auto")
    assert mode == "history" and "60000000" in why


def test_history_becomes_a_runnable_notebook() -> None:
    history = {
        "cells": [
            {"cell_type": "code", "source": "%load_ext nbtrack", "metadata": {}},
            {"cell_type": "code", "source": "alpha = 0.1", "metadata": {}},
            {"cell_type": "code", "source": "# Parameters\nalpha = 0.5\n", "metadata": {}},
            {"cell_type": "code", "source": "%track start", "metadata": {}},
            {"cell_type": "code", "source": "y = alpha * 2", "metadata": {}},
        ],
        "metadata": {"kernelspec": {"name": "python3"}, "nbtrack": {"kind": "execution-history"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    nb, injected = history_to_notebook(history, "alpha = 0.1")
    sources = [cell_source(c) for c in nb["cells"]]
    # papermill's old injection is dropped and returned, the parameters cell tagged, the run stopped
    assert injected == {"alpha": 0.5}
    assert sources == ["%load_ext nbtrack", "alpha = 0.1", "%track start", "y = alpha * 2", "%track stop"]
    assert nb["cells"][1]["metadata"]["tags"] == ["parameters"]
    assert "nbtrack" not in nb["metadata"]


def test_untracked_code_gets_wrapped_in_a_run() -> None:
    nb = {"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}}]}
    assert ensure_tracked(nb)
    assert [cell_source(c) for c in nb["cells"]] == [
        "%load_ext nbtrack\n%track start",
        "x = 1",
        "%track stop",
    ]
    assert not ensure_tracked({"cells": [{"cell_type": "code", "source": "%%track\nx = 1", "metadata": {}}]})


def test_parameter_values_are_typed_like_papermill() -> None:
    assert [parse_value(v) for v in ("36", "-1.5e3", "False", "None", "0.1.2")] == [
        36,
        -1500.0,
        False,
        None,
        "0.1.2",
    ]


# --- issue 13: evidence in every verdict ----------------------------------------------------------
def _cells(*oks: bool, figures: int = 0) -> list[dict]:
    """Cell-output rows as :func:`nbtrack.replay.outputs.compare_outputs_of` gives them."""
    return [
        {
            "cell": i + 2,
            "cell_id": f"id{i}",
            "source_head": f"print(step{i})",
            "ok": ok,
            "outputs": 2,
            "figures": figures,
            "detail": "" if ok else "stdout: 57.59 -> 52.17",
        }
        for i, ok in enumerate(oks)
    ]


def test_nothing_compared_is_unverified_not_reproduced() -> None:
    verdict, message = decide(None, True, [], [], [])
    assert verdict == UNVERIFIED and EXIT_CODES[verdict] == 4
    assert "nothing could be compared" in message
    assert "nbtrack:result" in message and "log a metric" in message
    # a param overridden with -p is no evidence either
    params = compare_params({"label": "a"}, {"label": "b"}, {"label"})
    verdict, message = decide(None, True, [], params, [])
    assert verdict == UNVERIFIED and "1 param overridden (label a -> b)" in message
    verdict, message = decide(None, True, [], [], [], outputs_mode="ignore")
    assert verdict == UNVERIFIED and "--outputs ignore" in message


def test_reproduced_names_what_was_compared_and_what_was_overridden() -> None:
    metrics = compare_metrics({"acc": 0.8, "loss": 0.2}, {"acc": 0.8, "loss": 0.2})
    params = compare_params({"seed": "1", "alpha": "0.1"}, {"seed": "1", "alpha": "0.5"}, {"alpha"})
    cells = _cells(True, True, figures=1)
    verdict, message = decide(None, True, metrics, params, [], cells=cells)
    assert verdict == REPRODUCED
    assert message == (
        "2 metrics, 1 param, 2 cell outputs and 2 figures match the original; "
        "1 param overridden (alpha 0.1 -> 0.5)"
    )
    assert count_evidence(metrics, params, [], cells) == {
        "metrics": 2,
        "params": 1,
        "outputs": 0,
        "cell_outputs": 2,
        "figures": 2,
    }
    # metric-less, outputs only
    assert decide(None, True, [], [], [], cells=_cells(True)) == (
        REPRODUCED,
        "2 cell outputs match the original",
    )


def test_differing_outputs_diverge_unless_only_reported() -> None:
    cells = _cells(True, False)
    verdict, message = decide(None, True, [], [], [], cells=cells)
    assert verdict == DIVERGED
    assert message == "cell 3 (`print(step1)`) output differs: stdout: 57.59 -> 52.17"
    # --outputs report: listed, never DIVERGED; only the matching outputs count towards the pass
    verdict, message = decide(None, True, [], [], [], cells=cells, outputs_mode="report")
    assert verdict == REPRODUCED
    assert message.startswith("2 cell outputs match the original; cell outputs differ in cell(s) 3")
    assert "--outputs report" in message
    verdict, message = decide(None, True, [], [], [], cells=_cells(False), outputs_mode="report")
    assert verdict == UNVERIFIED and "differ in cell(s) 2" in message


def test_a_result_that_varies_between_replays_is_no_pass() -> None:
    # the replay matched the original, but the metric varied between the replays themselves
    metrics = compare_metrics({"draw": 0.41}, {"draw": 0.41})
    varying = vary_metrics([{"draw": 0.41}, {"draw": 0.87}])
    assert varying == [{"kind": "metric", "name": "draw", "values": [0.41, 0.87]}]
    verdict, message = decide(None, True, metrics, [], [], nondeterministic=varying)
    assert verdict == DIVERGED
    assert message == (
        "nondeterministic: draw (0.41, 0.87) varies between replays; it matched the original only by chance"
    )
    # within the metric's tolerance, or whole numbers that repeat, nothing varies
    assert vary_metrics([{"acc": 0.8, "n": 3.0}, {"acc": 0.8 * (1 + 1e-12), "n": 3.0}]) == []
    assert vary_metrics([{"acc": 0.8}, {"acc": 0.81}], per_metric={"acc": 0.05}) == []
    assert vary_metrics([{"acc": 0.8}, {}])[0]["values"] == [0.8, None]
    # varying cell outputs decide only under --outputs check
    cell = [{"kind": "cell_output", "cell": 3, "source_head": "print(x)", "values": ["1 -> 2"]}]
    assert decide(None, True, metrics, [], [], nondeterministic=cell)[0] == DIVERGED
    assert decide(None, True, metrics, [], [], nondeterministic=cell, outputs_mode="report")[0] == REPRODUCED


def test_expected_errors_are_named_and_failures_still_fail() -> None:
    expected = [{"cell": 4, "source_head": "1/0", "ename": "ZeroDivisionError"}]
    verdict, message = decide(None, True, [], [], [], cells=_cells(True), expected_errors=expected)
    assert verdict == REPRODUCED and "cell 4 raised ZeroDivisionError as it did in the original" in message
    failure = {"cell": 2, "ename": "KeyError", "evalue": "'x'"}
    assert decide(failure, True, [], [], [], cells=_cells(True))[0] == FAILED


def test_options_are_checked_and_the_modes_agree_with_the_comparison() -> None:
    from nbtrack.errors import UsageError
    from nbtrack.replay.outputs import OUTPUT_MODES as COMPARED_MODES
    from nbtrack.replay.plan import ReplayOptions
    from nbtrack.replay.result import OUTPUT_MODES

    assert OUTPUT_MODES == COMPARED_MODES
    for bad in (ReplayOptions(outputs="sometimes"), ReplayOptions(repeat=0), ReplayOptions(repeat=True)):
        with pytest.raises(UsageError):
            bad.check()
    ReplayOptions(outputs="report", repeat=2).check()


def test_papermills_injected_cell_is_no_code_change() -> None:
    from nbtrack.compare import diff_cells
    from nbtrack.replay.plan import code_sources

    recorded = {
        "cells": [{"cell_type": "code", "source": "label = 'a'", "metadata": {"tags": ["parameters"]}}]
    }
    replayed = {
        "cells": [
            *recorded["cells"],
            {
                "cell_type": "code",
                "source": '# Parameters\nlabel = "b"\n',
                "metadata": {"tags": ["injected-parameters"]},
            },
        ]
    }
    assert diff_cells(code_sources(recorded), code_sources(replayed)) == []


def test_results_with_the_new_fields_read_back_from_json() -> None:
    result = ReplayResult(
        "3f2a",
        verdict=UNVERIFIED,
        message="nothing could be compared",
        evidence={"metrics": 0, "params": 0, "outputs": 0, "cell_outputs": 0, "figures": 0},
        outputs_mode="report",
        nondeterministic=[{"kind": "metric", "name": "draw", "values": [0.1, 0.2]}],
    )
    assert result.exit_code == 4
    assert ReplayResult.from_dict(result.to_dict()) == result
    assert ReplayResult.from_dict({"run_id": "x", "verdict": "UNVERIFIED"}).cell_outputs == []
