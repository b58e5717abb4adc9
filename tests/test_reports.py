"""Replay reports: JUnit XML for CI, the self-contained HTML page, the terminal text, atomic writes."""

from __future__ import annotations

import base64
import copy
import io
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbtrack.errors import NbtrackError
from nbtrack.replay.reports import format_result, html_report, junit_xml, write_reports
from nbtrack.runs.diff import diff_cells

RECORDED_CELLS = [
    "alpha = 0.1",
    "df = pd.read_csv('data/churn.csv')",
    "model = RandomForest(alpha=alpha).fit(df)",
]
REPLAYED_CELLS = [
    "alpha = 0.5  # « overridden » & <injected>",
    "df = pd.read_csv('data/churn.csv')",
    "model = RandomForest(alpha=alpha).fit(df)",
    "print('<script>alert(1)</script>')",
]


def _result(verdict: str, **changes: Any) -> dict[str, Any]:
    """A result dict as ``nbtrack replay`` makes it, reproduced unless changed."""
    base: dict[str, Any] = {
        "run_id": "3f2a9b1c4d5e6f708192a3b4c5d6e7f8",
        "run_name": "random-forest",
        "experiment": "quickstart",
        "notebook": "notebooks/train.ipynb",
        "verdict": verdict,
        "exit_code": {"REPRODUCED": 0, "DIVERGED": 1, "FAILED": 2, "CANNOT_REPLAY": 3, "UNVERIFIED": 4}[
            verdict
        ],
        "message": "REPRODUCED: 2 metrics within tolerance",
        "replay_run_id": "9c41d2e3f4a5b6c7d8e9f0a1b2c3d4e5",
        "mode": "notebook",
        "mode_reason": "the run was executed top to bottom",
        "env": "current",
        "kernel": "python3",
        "parameters": {"recorded": {"alpha": 0.1}, "overrides": {}},
        "risks": [],
        "metrics": [
            {
                "name": "accuracy",
                "original": 0.81,
                "replayed": 0.81,
                "difference": 0.0,
                "tolerance": 1e-9,
                "ok": True,
            },
            {
                "name": "rows",
                "original": 2000.0,
                "replayed": 2000.0,
                "difference": 0.0,
                "tolerance": 0.0,
                "ok": True,
            },
        ],
        "params": [{"name": "alpha", "original": "0.1", "replayed": "0.1", "ok": True, "overridden": False}],
        "outputs": [{"path": "models/model.pkl", "original": "a" * 32, "replayed": "a" * 32, "ok": True}],
        "failure": None,
        "environment": {"available": True, "python": None, "added": [], "removed": [], "changed": []},
        "data": [
            {
                "path": "data/churn.csv",
                "hash_name": "md5",
                "hash": "0d5f" * 8,
                "status_at_record": "clean",
                "link": "hardlink",
                "fetched": False,
            }
        ],
        "code_diff": [],
        "duration_s": 12.3,
        "started": "2026-11-21T10:00:00.000+00:00",
        "workspace": None,
        "view": "https://mlflow.example.com/#/experiments/1/runs/9c41d2e3f4a5b6c7d8e9f0a1b2c3d4e5",
    }
    base.update(changes)
    return base


def reproduced() -> dict[str, Any]:
    return _result("REPRODUCED")


def diverged() -> dict[str, Any]:
    return _result(
        "DIVERGED",
        run_id="5b6c7d8e9f0a1b2c3d4e5f60718293a4",
        run_name='gbm "tuned" <α & β>',
        message="DIVERGED: accuracy 0.81 -> 0.79, output models/model.pkl changed",
        parameters={"recorded": {"alpha": 0.1}, "overrides": {"alpha": 0.5}},
        risks=[
            "data/x.csv was modified (not committed to DVC) when the run was recorded; <results may differ>"
        ],
        metrics=[
            {
                "name": "accuracy",
                "original": 0.81,
                "replayed": 0.79,
                "difference": 0.79 - 0.81,
                "tolerance": 1e-9,
                "ok": False,
            },
            {
                "name": "f1_größe",
                "original": 0.7,
                "replayed": None,
                "difference": None,
                "tolerance": 1e-9,
                "ok": False,
            },
            {
                "name": "rows",
                "original": 2000.0,
                "replayed": 2000.0,
                "difference": 0.0,
                "tolerance": 0.0,
                "ok": True,
            },
        ],
        params=[
            {"name": "alpha", "original": "0.1", "replayed": "0.5", "ok": True, "overridden": True},
            {"name": "seed", "original": "42", "replayed": "42", "ok": True, "overridden": False},
        ],
        outputs=[{"path": "models/model.pkl", "original": "a" * 32, "replayed": "b" * 32, "ok": False}],
        environment={
            "available": True,
            "python": {"a": "3.11.2", "b": "3.12.1"},
            "added": [{"name": "polars", "version": "1.0.0"}],
            "removed": [],
            "changed": [
                {"name": "numpy", "a": "1.26.4", "b": "2.0.0"},
                {"name": "pandas", "a": "2.1.0", "b": "2.2.2"},
                {"name": "scikit-learn", "a": "1.3.0", "b": "1.5.0"},
            ],
        },
        code_diff=diff_cells(RECORDED_CELLS, REPLAYED_CELLS),
    )


def failed() -> dict[str, Any]:
    return _result(
        "FAILED",
        run_id="77aa88bb99cc00dd11ee22ff33aa44bb",
        run_name="needs-token",
        message="FAILED: cell 4 raised KeyError: 'TOKEN'",
        metrics=[],
        params=[],
        outputs=[],
        failure={
            "cell": 4,
            "execution_count": 4,
            "source_head": "x = os.environ['TOKEN']  # <secret> & \"quoted\"",
            "ename": "KeyError",
            "evalue": "\x1b[31m'TOKEN'\x1b[0m\x00",  # colour codes and a NUL, as kernels sometimes send
        },
    )


def cannot_replay() -> dict[str, Any]:
    return _result(
        "CANNOT_REPLAY",
        run_id="0123456789abcdef0123456789abcdef",
        run_name=None,
        notebook=None,
        mode=None,
        mode_reason=None,
        message="data/churn.csv (md5 3f2a…) is in neither the DVC cache nor the remote 'storage'; "
        "run `dvc push` where it was tracked",
        replay_run_id=None,
        metrics=[],
        params=[],
        outputs=[],
        data=[],
        environment={"available": False, "reason": "not compared"},
        duration_s=0.4,
        view=None,
    )


def _figure_rows() -> dict[str, Any]:
    """A real figure comparison: two small PNGs drawn in different colours."""
    from PIL import Image, ImageDraw

    from nbtrack.replay.outputs.images import compare_image

    encoded = []
    for colour in ("#1f77b4", "#d62728"):
        image = Image.new("RGB", (120, 80), "white")
        ImageDraw.Draw(image).line([(5, 70), (60, 10), (115, 50)], fill=colour, width=4)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    row = compare_image(*encoded)
    row.pop("detail")
    return {"cell": 7, "output": 1, "mime": "image/png", **row}


def outputs_diverged() -> dict[str, Any]:
    """A metric-less notebook whose printed result and figure changed (issue 13's fields)."""
    return _result(
        "DIVERGED",
        run_id="c0ffee00c0ffee00c0ffee00c0ffee00",
        run_name="walk",
        message="DIVERGED: cell 3 (`import random`) output differs: stdout: 57.59 -> 52.17",
        metrics=[],
        params=[{"name": "n", "original": "100", "replayed": "50", "ok": True, "overridden": True}],
        outputs=[],
        parameters={"recorded": {"n": 100}, "overrides": {"n": 50}},
        cell_outputs=[
            {
                "cell": 2,
                "cell_id": "a1",
                "source_head": "print(sum(range(10)))",
                "ok": True,
                "strict": False,
                "outputs": 1,
                "figures": 0,
                "kinds": ["text"],
                "detail": "",
            },
            {
                "cell": 3,
                "cell_id": "b2",
                "source_head": "import random",
                "ok": False,
                "strict": False,
                "outputs": 1,
                "figures": 0,
                "kinds": ["text"],
                "detail": "stdout: 57.59 -> 52.17",
            },
            {
                "cell": 7,
                "cell_id": "c3",
                "source_head": "plt.plot(walk, color=<colour>)",
                "ok": False,
                "strict": False,
                "outputs": 2,
                "figures": 1,
                "kinds": ["image", "text"],
                "detail": "figure differs (perceptual distance 0.352)",
            },
        ],
        figures=[_figure_rows()],
        skipped_outputs=[
            {"cell": 1, "source_head": "%load_ext nbtrack", "reason": "nbtrack's own magics"},
            {"cell": 4, "source_head": "print(time.time())", "reason": "tagged nbtrack:ignore-output"},
        ],
        evidence={"metrics": 0, "params": 0, "outputs": 0, "cell_outputs": 3, "figures": 1},
        outputs_mode="check",
        expected_errors=[{"cell": 5, "source_head": "1 / 0", "ename": "ZeroDivisionError"}],
        nondeterministic=[{"kind": "cell_output", "cell": 3, "values": ["57.59", "52.17", "49.3"]}],
    )


def unverified() -> dict[str, Any]:
    return _result(
        "UNVERIFIED",
        run_id="e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1",
        message="UNVERIFIED: nothing could be compared (no metric, param, DVC output, cell output or figure)",
        metrics=[],
        params=[],
        outputs=[],
        evidence={"metrics": 0, "params": 0, "outputs": 0, "cell_outputs": 0, "figures": 0},
    )


def batch() -> list[dict[str, Any]]:
    return [reproduced(), diverged(), failed(), cannot_replay()]


class _Page(HTMLParser):
    """The tags, attributes, ids, table rows and visible text of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: list[tuple[str, str]] = []  # (tr class, text of the row)
        self._row: list[str] | None = None
        self._row_class = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self._row, self._row_class = [], dict(attrs).get("class") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append((self._row_class, " ".join(self._row)))
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._row is not None:
            self._row.append(data.strip())

    @property
    def visible(self) -> str:
        return "".join(self.text)

    def ids(self) -> set[str]:
        return {a.get("id") or "" for _, a in self.tags} - {""}

    def row(self, containing: str) -> tuple[str, str]:
        (found,) = [r for r in self.rows if containing in r[1]]
        return found


# --- JUnit ---------------------------------------------------------------------------------------


def test_junit_has_one_testcase_per_run_with_the_verdict_as_pass_failure_or_error() -> None:
    # Given one result of each verdict
    results = batch()
    # When they are written as JUnit XML
    root = ET.fromstring(junit_xml(results).encode("utf-8"))
    # Then one suite counts them as Jenkins shows them: 4 tests, 2 failures, 1 error
    (suite,) = root.iter("testsuite")
    assert suite.get("name") == "nbtrack replay"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "4",
        "2",
        "1",
        "0",
    )
    assert float(suite.get("time") or 0) == pytest.approx(12.3 * 3 + 0.4)
    cases = suite.findall("testcase")
    assert len(cases) == 4
    ok, div, fail, cannot = cases
    # And each case is named by run name and id, with its duration
    assert ok.get("name") == "random-forest (3f2a9b1c4d5e6f708192a3b4c5d6e7f8)" and ok.get("time") == "12.300"
    assert cannot.get("name") == "0123456789abcdef0123456789abcdef"
    assert ok.find("failure") is None and ok.find("error") is None
    # And a divergence is a failure whose text holds each differing metric with both values
    failure = div.find("failure")
    assert failure is not None and failure.get("type") == "DIVERGED"
    assert failure.get("message") == "DIVERGED: accuracy 0.81 -> 0.79, output models/model.pkl changed"
    accuracy = next(line for line in (failure.text or "").splitlines() if line.startswith("metric  accuracy"))
    assert accuracy.split()[:5] == ["metric", "accuracy", "0.81", "0.79", "-0.02"]
    assert accuracy.endswith("(relative tolerance 1e-09)")
    assert "f1_größe" in (failure.text or "") and "missing" in (failure.text or "")
    assert "models/model.pkl" in (failure.text or "") and "b" * 32 in (failure.text or "")
    assert "alpha" in (failure.text or "") and "overridden" in (failure.text or "")
    assert "seed" not in (failure.text or "")  # params that match are not noise in the failure
    # And an execution failure names the cell, the exception and its message
    failure = fail.find("failure")
    assert failure is not None and failure.get("type") == "FAILED"
    assert "cell 4 (In [4]) raised KeyError: 'TOKEN'" in (failure.text or "")
    assert "os.environ['TOKEN']" in (failure.text or "")
    # And a run that cannot be replayed is an error carrying why
    error = cannot.find("error")
    assert error is not None and error.get("type") == "CANNOT_REPLAY"
    assert "neither the DVC cache nor the remote 'storage'" in (error.text or "")
    assert cannot.find("failure") is None


def test_junit_classname_splits_into_experiment_and_notebook_as_jenkins_reads_it() -> None:
    root = ET.fromstring(junit_xml([reproduced(), cannot_replay()]))
    with_notebook, without = root.iter("testcase")
    # Jenkins takes everything before the last dot as the package, the rest as the class
    assert (with_notebook.get("classname") or "").rsplit(".", 1) == ["quickstart", "notebooks/train"]
    assert without.get("classname") == "quickstart"


def test_junit_system_out_carries_risks_and_environment_drift() -> None:
    root = ET.fromstring(junit_xml([diverged()]))
    out = root.findtext("testsuite/testcase/system-out") or ""
    assert "data/x.csv was modified (not committed to DVC)" in out and "<results may differ>" in out
    assert "environment: python 3.11.2 -> 3.12.1, 3 changed, 1 added, 0 removed" in out
    assert "numpy: 1.26.4 -> 2.0.0 (changed)" in out
    assert "parameters overridden: alpha=0.5" in out


def test_junit_keeps_odd_characters_and_drops_what_xml_cannot_hold(tmp_path: Path) -> None:
    # Given names with quotes, markup and non-ASCII, and an exception message with ANSI codes and NUL
    results = [diverged(), failed()]
    # When the file is written and parsed back as Jenkins does (bytes, UTF-8)
    write_reports(results, junit=tmp_path / "replay.xml", html=None)
    root = ET.parse(tmp_path / "replay.xml").getroot()
    div, fail = root.iter("testcase")
    # Then names read back exactly, and the exception value is clean text
    assert div.get("name") == 'gbm "tuned" <α & β> (5b6c7d8e9f0a1b2c3d4e5f60718293a4)'
    failure = fail.find("failure")
    assert failure is not None
    assert "KeyError: 'TOKEN'" in (failure.text or "")
    assert "\x1b" not in (failure.text or "") and "[31m" not in (failure.text or "")


@settings(deadline=None)  # a loaded 2-core machine is slow, not wrong
@given(name=st.text(max_size=40), message=st.text(max_size=80))
def test_junit_parses_whatever_text_a_run_carries(name: str, message: str) -> None:
    result = _result("CANNOT_REPLAY", run_name=name or None, message=message or "why")
    case = ET.fromstring(junit_xml([result]).encode("utf-8")).find("testsuite/testcase")
    assert case is not None and "3f2a9b1c4d5e6f708192a3b4c5d6e7f8" in (case.get("name") or "")


# Printable text of any script: it must come back exactly as the run carried it
_PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn")), min_size=1, max_size=40)


@settings(deadline=None)
@given(name=_PRINTABLE, message=_PRINTABLE)
def test_junit_round_trips_printable_names_and_messages(name: str, message: str) -> None:
    result = _result("CANNOT_REPLAY", run_name=name, message=message)
    case = ET.fromstring(junit_xml([result]).encode("utf-8")).find("testsuite/testcase")
    assert case is not None and case.get("name") == f"{name} (3f2a9b1c4d5e6f708192a3b4c5d6e7f8)"
    error = case.find("error")
    assert error is not None and error.get("message") == message and error.text == message


def test_junit_of_no_runs_is_an_empty_suite() -> None:
    suite = ET.fromstring(junit_xml([])).find("testsuite")
    assert suite is not None and suite.get("tests") == "0" and not suite.findall("testcase")


# --- HTML ----------------------------------------------------------------------------------------


def test_html_is_self_contained() -> None:
    page = _Page(html_report([*batch(), outputs_diverged()]))
    # No scripts, no stylesheets or fonts fetched, no links leaving the page; figures are inline data
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    images = [a.get("src") or "" for t, a in page.tags if t == "img"]
    assert len(images) == 3 and all(src.startswith("data:image/png;base64,") for src in images)
    for tag, attrs in page.tags:
        for attr in ("src", "href", "action", "srcset"):
            value = (attrs.get(attr) or "").strip().lower()
            assert not value.startswith(("http://", "https://", "//")), (tag, attr, value)
    # And every in-page link lands on a section of the page
    targets = [a.get("href") or "" for t, a in page.tags if t == "a"]
    assert targets and all(h.startswith("#") and h[1:] in page.ids() for h in targets)
    # And the MLflow link of the replay run is still there for a person to copy
    assert "https://mlflow.example.com/#/experiments/1/runs/9c41d2e3f4a5b6c7d8e9f0a1b2c3d4e5" in page.visible


def test_html_shows_verdict_metrics_and_marks_what_diverged() -> None:
    text = html_report([diverged()])
    page = _Page(text)
    banner = [a for t, a in page.tags if t == "div" and "banner" in (a.get("class") or "")]
    assert [a.get("class") for a in banner] == ["banner v-DIVERGED"]
    assert "<b>DIVERGED</b>accuracy 0.81 -&gt; 0.79, output models/model.pkl changed</div>" in text
    # The failing metric rows are marked, the one within tolerance is not
    cls, text = page.row("accuracy")
    assert cls == "bad" and "0.81" in text and "0.79" in text and "-0.02" in text and "1e-09" in text
    cls, text = page.row("f1_größe")
    assert cls == "bad" and "missing" in text
    cls, text = page.row("rows")
    assert cls == "" and "within tolerance" in text
    # The overridden param is marked as such, the output that changed as bad
    cls, text = page.row("alpha")
    assert cls == "over" and "overridden" in text
    cls, text = page.row("models/model.pkl")
    assert cls == "bad" and "a" * 32 in text and "b" * 32 in text
    # Risks and environment drift are there
    assert "data/x.csv was modified (not committed to DVC)" in page.visible
    assert "python 3.11.2 -> 3.12.1, 3 changed, 1 added, 0 removed" in page.visible
    assert page.row("numpy")[1].split() == ["numpy", "1.26.4", "2.0.0", "changed"]


def test_html_colours_the_code_diff_lines() -> None:
    page = html_report([diverged()])
    assert '<div class="del">-alpha = 0.1</div>' in page
    assert '<div class="add">+alpha = 0.5  # « overridden » &amp; &lt;injected&gt;</div>' in page
    assert "cell 4 only in the replayed notebook" in _Page(page).visible


def test_html_escapes_markup_from_paths_names_and_cell_sources() -> None:
    # Given a notebook path, a run name and cell sources carrying markup
    evil = _result(
        "FAILED",
        notebook="notebooks/<script>alert('nb')</script>.ipynb",
        run_name="<img src=x onerror=alert(1)>",
        failure={
            "cell": 1,
            "execution_count": 1,
            "source_head": "<script>x</script>",
            "ename": "E",
            "evalue": "<b>",
        },
        code_diff=diff_cells(["a = 1"], ["a = 1", "<script>alert('cell')</script>"]),
    )
    # When the page is rendered
    text = html_report([evil, diverged()])
    page = _Page(text)
    # Then none of it becomes markup, and all of it reads as the user wrote it
    assert "<script" not in text.lower() and "<img" not in text.lower()
    assert not [t for t, _ in page.tags if t in ("script", "img")]
    assert "notebooks/<script>alert('nb')</script>.ipynb" in page.visible
    assert "<script>alert('cell')</script>" in page.visible
    assert "<img src=x onerror=alert(1)>" in page.visible


def test_html_failure_shows_cell_exception_and_message() -> None:
    page = _Page(html_report([failed()]))
    assert "cell 4 (In [4]) raised KeyError: 'TOKEN'" in " ".join(page.visible.split())
    assert "x = os.environ['TOKEN']" in page.visible


def test_html_batch_summary_lists_every_run_and_counts_verdicts() -> None:
    results = [*batch(), diverged()]
    page = _Page(html_report(results))
    links = {a["href"] for t, a in page.tags if t == "a"}
    sections = {a["id"] for t, a in page.tags if t == "section"}
    assert len(sections) == 5 and links == {f"#{s}" for s in sections}  # same run twice: two sections
    for name in ("random-forest", 'gbm "tuned" <α & β>', "needs-token", "0123456789abcdef0123456789abcdef"):
        assert any(name in text for _, text in page.rows)
    assert "REPRODUCED 1" in page.visible and "DIVERGED 2" in page.visible
    assert "FAILED 1" in page.visible and "CANNOT_REPLAY 1" in page.visible


def test_html_single_run_has_no_summary_and_says_when_nothing_was_compared() -> None:
    bare = _result("REPRODUCED", metrics=[], outputs=[], params=[])
    page = _Page(html_report([bare]))
    assert not [t for t, _ in page.tags if t == "a"] and "Summary" not in page.visible
    assert "no metrics to compare: only the execution was checked" in page.visible
    assert "no drift" in page.visible


def test_html_collapses_long_environment_drift_only() -> None:
    long_drift = diverged()
    long_drift["environment"] = dict(
        long_drift["environment"], changed=[{"name": f"pkg{i}", "a": "1", "b": "2"} for i in range(40)]
    )
    short_page, long_page = _Page(html_report([diverged()])), _Page(html_report([long_drift]))
    assert [a for t, a in short_page.tags if t == "details"] == [{"open": None}]
    assert [a for t, a in long_page.tags if t == "details"] == [{}]
    assert "40 changed" in long_page.visible and "pkg39" in long_page.visible


def test_html_shows_data_versions() -> None:
    result = reproduced()
    result["data"][0].update(status_at_record="modified", fetched=True)
    _, text = _Page(html_report([result])).row("data/churn.csv")
    assert text.split() == [
        "data/churn.csv",
        "md5:" + "0d5f" * 8,
        "modified",
        "hardlink",
        "fetched",
        "from",
        "the",
        "remote",
    ]


# --- files ---------------------------------------------------------------------------------------


def test_write_reports_writes_both_creates_folders_and_leaves_no_temp_files(tmp_path: Path) -> None:
    results = batch()
    out = tmp_path / "reports" / "ci"
    write_reports(results, junit=out / "replay.xml", html=out / "replay.html")
    assert sorted(p.name for p in out.iterdir()) == ["replay.html", "replay.xml"]
    assert (out / "replay.xml").read_text(encoding="utf-8") == junit_xml(results)
    assert (out / "replay.html").read_text(encoding="utf-8") == html_report(results)
    # Writing again replaces the reports
    write_reports([reproduced()], junit=out / "replay.xml", html=out / "replay.html")
    assert ET.parse(out / "replay.xml").getroot().get("tests") == "1"
    assert sorted(p.name for p in out.iterdir()) == ["replay.html", "replay.xml"]


def test_write_reports_failure_names_the_file_and_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "replay.html").mkdir()  # a folder where the report should go
    with pytest.raises(NbtrackError, match=r"replay\.html"):
        write_reports(batch(), junit=None, html=tmp_path / "replay.html")
    assert [p.name for p in tmp_path.iterdir()] == ["replay.html"]


def test_write_reports_with_neither_path_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_reports(batch(), junit=None, html=None)
    assert not list(tmp_path.iterdir())


# --- terminal ------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [reproduced, diverged, failed, cannot_replay])
def test_format_result_opens_with_the_verdict(make: Any) -> None:
    result = make()
    first = format_result(result).splitlines()[0]
    assert first.startswith(result["verdict"] + "  run " + result["run_id"][:8] + "…")


def test_format_result_of_a_divergence_aligns_what_differs() -> None:
    text = format_result(diverged())
    lines = text.splitlines()
    assert lines[0] == 'DIVERGED  run 5b6c7d8e… (gbm "tuned" <α & β>) of notebooks/train.ipynb'
    assert lines[1] == "  accuracy 0.81 -> 0.79, output models/model.pkl changed"
    risk = "data/x.csv was modified (not committed to DVC) when the run was recorded; <results may differ>"
    assert f"  risk: {risk}" in lines
    header = next(line for line in lines if "original" in line and "replayed" in line)
    accuracy = next(line for line in lines if line.startswith("  metric  accuracy"))
    missing = next(line for line in lines if line.startswith("  metric  f1_größe"))
    # The values sit under their column headings
    assert accuracy.index("0.81") == header.index("original") == missing.index("0.7")
    assert accuracy.index("0.79") == header.index("replayed") == missing.index("missing")
    assert accuracy.index("-0.02") == header.index("difference")
    assert "rows" not in text.split("environment")[0]  # a metric within tolerance is not listed
    output = next(line for line in lines if line.startswith("  output  models/model.pkl"))
    assert "aaaaaaaaaa…" in output and "bbbbbbbbbb…" in output
    assert "  environment: python 3.11.2 -> 3.12.1, 3 changed, 1 added, 0 removed" in lines
    assert "  mode notebook (the run was executed top to bottom); env current; kernel python3" in lines
    assert "  parameters overridden: alpha=0.5" in lines
    assert lines[-1].endswith("runs/9c41d2e3f4a5b6c7d8e9f0a1b2c3d4e5")
    assert 8 <= len(lines) <= 30


def test_format_result_of_a_reproduction_says_what_was_checked() -> None:
    lines = format_result(reproduced()).splitlines()
    assert lines[0] == "REPRODUCED  run 3f2a9b1c… (random-forest) of notebooks/train.ipynb"
    assert "  2 metric(s) within tolerance, 1 DVC output(s) identical" in lines
    assert "  environment: no drift" in lines
    bare = format_result(_result("REPRODUCED", metrics=[], outputs=[]))
    assert "no metrics or DVC outputs to compare: only the execution was checked" in bare


def test_format_result_of_a_failure_names_cell_and_exception() -> None:
    text = format_result(failed())
    assert "  failure: cell 4 (In [4]) raised KeyError: 'TOKEN'\n" in text  # without colour codes or NUL
    assert "      x = os.environ['TOKEN']" in text


def test_format_result_of_cannot_replay_is_the_reason_without_empty_sections() -> None:
    lines = format_result(cannot_replay()).splitlines()
    assert lines[0] == "CANNOT_REPLAY  run 01234567…"
    assert "neither the DVC cache nor the remote 'storage'" in lines[1]
    assert not any(line.lstrip().startswith(("environment", "mode", "see the replay")) for line in lines)


def test_reports_do_not_change_the_results() -> None:
    results = batch()
    before = copy.deepcopy(results)
    junit_xml(results), html_report(results), [format_result(r) for r in results]
    assert results == before


# --- issue 13: evidence, UNVERIFIED, cell outputs, figures, nondeterminism -----------------------


def test_junit_counts_an_unverified_replay_as_skipped_never_passed() -> None:
    # Given a replay that could compare nothing, beside one that reproduced
    root = ET.fromstring(junit_xml([reproduced(), unverified()]).encode("utf-8"))
    (suite,) = root.iter("testsuite")
    # Then CI sees it skipped, with why, and not among the passes
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "2",
        "0",
        "0",
        "1",
    )
    ok, case = suite.findall("testcase")
    skipped = case.find("skipped")
    assert skipped is not None and "nothing could be compared" in (skipped.get("message") or "")
    assert case.find("failure") is None and case.find("error") is None and ok.find("skipped") is None
    assert "compared: 0 metrics, 0 params, 0 DVC outputs, 0 cell outputs, 0 figures" in (
        case.findtext("system-out") or ""
    )


def test_junit_divergence_of_cell_outputs_names_the_cells() -> None:
    case = ET.fromstring(junit_xml([outputs_diverged()])).find("testsuite/testcase")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None
    text = failure.text or ""
    assert "cell 3 `import random`: stdout: 57.59 -> 52.17 [nondeterministic]" in text
    assert "cell 7 `plt.plot(walk, color=<colour>)`: figure differs" in text
    out = case.findtext("system-out") or ""
    assert "compared: 0 metrics, 0 params, 0 DVC outputs, 3 cell outputs, 1 figure" in out
    assert "expected error: cell 5 `1 / 0` raised ZeroDivisionError, as in the original" in out
    assert "cell 3 output (57.59, 52.17, 49.3)" in out


def test_html_shows_the_evidence_the_differing_cells_and_the_figures_side_by_side() -> None:
    text = html_report([outputs_diverged()])
    page = _Page(text)
    # The evidence under the banner
    assert "compared: 0 metrics, 0 params, 0 DVC outputs, 3 cell outputs, 1 figure" in page.visible
    assert "no metrics logged: the cell outputs were compared" in page.visible
    # The differing cells, by number, first line and what differs; the matching cell is not listed
    cls, row = page.row("import random")
    assert cls == "bad" and row.split()[0] == "3" and "stdout: 57.59 -> 52.17" in row
    assert "nondeterministic" in row
    assert not [r for r in page.rows if "print(sum(range(10)))" in r[1]]
    assert "plt.plot(walk, color=<colour>)" in page.visible
    # Each differing figure: original | replayed | difference, as inline PNGs
    alts = [a.get("alt") for t, a in page.tags if t == "img"]
    assert alts == ["original", "replayed", "difference"]
    assert "cell 7, output 1 (image/png): perceptual distance" in page.visible
    # Cells not compared are collapsed, with why
    details = text[text.index("cell(s) not compared") - 40 :]
    assert details.startswith("<details>") or "<details><summary>2 cell(s) not compared" in text
    assert "tagged nbtrack:ignore-output" in page.visible
    # Expected errors and the overridden param
    assert "ZeroDivisionError" in page.row("1 / 0")[1] and "raised as in the original" in page.row("1 / 0")[1]
    cls, row = page.row("100")
    assert cls == "over" and "overridden" in row


def test_html_leaves_out_a_thumbnail_that_is_not_base64() -> None:
    result = outputs_diverged()
    result["figures"][0]["replayed_png"] = '"><script>alert(1)</script>'
    text = html_report([result])
    assert "<script" not in text.lower()
    assert [a.get("alt") for t, a in _Page(text).tags if t == "img"] == ["original", "difference"]


def test_html_marks_a_nondeterministic_metric_and_colours_unverified() -> None:
    result = diverged()
    result["nondeterministic"] = [{"kind": "metric", "name": "accuracy", "values": [0.81, 0.79]}]
    page = _Page(html_report([result]))
    cls, row = page.row("relative tolerance")  # the header, then the metric rows
    cls, row = next(r for r in page.rows if r[1].startswith("accuracy"))
    assert cls == "bad" and "nondeterministic" in row
    assert "Nondeterministic results" in page.visible and "metric accuracy (0.81, 0.79)" in page.visible
    batch_page = _Page(html_report([result, unverified()]))
    banners = [
        a.get("class") for t, a in batch_page.tags if t == "div" and "banner" in (a.get("class") or "")
    ]
    assert "banner v-UNVERIFIED" in banners
    assert "UNVERIFIED 1" in batch_page.visible


def test_format_result_lists_evidence_differing_cells_and_expected_errors() -> None:
    lines = format_result(outputs_diverged()).splitlines()
    assert "  compared: 0 metrics, 0 params, 0 DVC outputs, 3 cell outputs, 1 figure" in lines
    assert "  cell outputs that differ:" in lines
    assert "    cell 3 `import random`: stdout: 57.59 -> 52.17 [nondeterministic]" in lines
    assert "  expected error: cell 5 `1 / 0` raised ZeroDivisionError, as in the original" in lines
    assert "    cell 3 output (57.59, 52.17, 49.3)" in lines
    # The overridden param is shown as overridden, never among what matched
    param = next(line for line in lines if line.startswith("  param"))
    assert param.split()[1:4] == ["n", "100", "50"] and param.endswith("overridden")
    assert "only the execution was checked" not in "\n".join(lines)


def test_format_result_of_unverified_says_nothing_was_compared() -> None:
    lines = format_result(unverified()).splitlines()
    assert lines[0].startswith("UNVERIFIED  run e1e1e1e1…")
    assert "  compared: 0 metrics, 0 params, 0 DVC outputs, 0 cell outputs, 0 figures" in lines


def test_an_older_result_without_evidence_counts_it_from_its_rows() -> None:
    # Given the JSON of a result written before issue 13 (no evidence, no cell output fields)
    old = reproduced()
    old["params"].append({"name": "seed", "original": "1", "replayed": "2", "ok": True, "overridden": True})
    # Then every report counts what its rows hold, overridden params left out
    evidence = "compared: 2 metrics, 1 param, 1 DVC output, 0 cell outputs, 0 figures"
    assert f"  {evidence}" in format_result(old).splitlines()
    assert evidence in _Page(html_report([old])).visible
    assert evidence in (ET.fromstring(junit_xml([old])).findtext("testsuite/testcase/system-out") or "")
