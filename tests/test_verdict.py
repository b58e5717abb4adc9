"""The verdict's comparisons and the replay's choices that need no kernel."""

from __future__ import annotations

import math

from nbtrack.capture.notebook import cell_source
from nbtrack.models import Section, Snapshot
from nbtrack.replay.notebooks import choose_mode, ensure_tracked, history_to_notebook
from nbtrack.replay.result import parse_value
from nbtrack.replay.verdict import compare_metrics, compare_outputs, compare_params, summarize
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
