"""``pytest-overlay diff`` and ``show``: grouping two reports' results, and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from pytest_overlay import cli
from pytest_overlay.errors import ConfigError
from pytest_overlay.models import CheckResult
from pytest_overlay.report import diff
from tests.unit.reports import report_of


def _r(check: str, src: str, outcome: str, dst: str = "", vni: int = 0) -> CheckResult:
    return CheckResult(check=check, src=src, dst=dst or None, vni=vni or None,
                       outcome=outcome, message=f"{check} {src} {outcome}")  # type: ignore[arg-type]


OLD: List[CheckResult] = [
    _r("pmtu", "h1", "pass", "h3"), _r("reachability", "h1", "pass", "h3", 4096),
    _r("mtu", "overlay0", "fail", vni=4096), _r("ports", "h1", "fail", "h2"),
    _r("clock", "h2", "error"), _r("neighbours", "h1", "skip"), _r("drops", "h1", "pass"),
    _r("conntrack", "h4", "pass"),
]
NEW: List[CheckResult] = [
    _r("pmtu", "h1", "fail", "h3"), _r("reachability", "h1", "error", "h3", 4096),
    _r("mtu", "overlay0", "pass", vni=4096), _r("ports", "h1", "fail", "h2"),
    _r("clock", "h2", "skip"), _r("neighbours", "h1", "pass"), _r("drops", "h1", "pass"),
    _r("conntrack", "h5", "fail"),
]


def _keys(rows: List[diff.Row]) -> List[str]:
    return [f"{check} {tid}" for (check, tid), _, _ in rows]


def test_each_result_falls_into_one_group() -> None:
    g = diff.compare(report_of(OLD), report_of(NEW))
    assert _keys(g["broke"]) == ["pmtu h1->h3", "reachability h1->h3[vni=4096]"]
    assert _keys(g["fixed"]) == ["mtu overlay0[vni=4096]"]
    assert _keys(g["still failing"]) == ["ports h1->h2"]
    assert _keys(g["changed"]) == ["clock h2", "neighbours h1"]  # error -> skip, skip -> pass
    assert _keys(g["same"]) == ["drops h1"]
    assert _keys(g["gone"]) == ["conntrack h4"] and _keys(g["new"]) == ["conntrack h5"]
    assert diff.broke(g)


def test_a_new_failing_result_alone_is_worse_and_fixes_alone_are_not() -> None:
    base = [_r("pmtu", "h1", "pass", "h2")]
    assert diff.broke(diff.compare(report_of(base), report_of([*base, _r("drops", "h9", "fail")])))
    fixed = diff.compare(report_of(OLD[2:3]), report_of(NEW[2:3]))  # mtu: fail -> pass
    assert _keys(fixed["fixed"]) == ["mtu overlay0[vni=4096]"] and not diff.broke(fixed)
    assert not diff.broke(diff.compare(report_of(base), report_of(base)))


def test_the_rendering_names_the_groups_and_counts() -> None:
    g = diff.compare(report_of(OLD), report_of(NEW))
    text = diff.render(report_of(OLD), report_of(NEW), g, width=120)
    assert "Broke (2)" in text and "Fixed (1)" in text and "Still failing (1)" in text
    assert "1 results only in the new report: conntrack 1 fail" in text
    assert "1 results only in the old report: conntrack 1 pass" in text
    assert text.rstrip().endswith("diff: 2 broke, 1 fixed, 1 still failing, 2 changed, 1 new, "
                                  "1 gone; 1 the same")


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such report"):
        diff.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not a JSON report"):
        diff.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"results": []}')
    with pytest.raises(ConfigError) as e:
        diff.load(tmp_path / "other.json")
    assert "other.json: not a pytest-overlay report: tool_version: Field required" in e.value.message


def test_the_commands_exit_with_what_they_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(report_of(OLD).model_dump_json())
    new.write_text(report_of(NEW).model_dump_json())
    assert cli.main(["diff", str(old), str(new), "--color=no"]) == 1
    assert "Broke (2)" in capsys.readouterr().out
    assert cli.main(["diff", str(old), str(old)]) == 0
    # the same report twice: nothing broke, what failed still fails
    assert "diff: 3 still failing; 5 the same" in capsys.readouterr().out
    assert cli.main(["show", str(new), "--color=no"]) == 0
    out = capsys.readouterr().out
    assert "Failures" in out and "overlay: " in out
    assert cli.main(["diff", str(old), str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert "pytest-overlay diff:" in err and "nope.json: no such report" in err and "fix:" in err


def test_a_path_mtu_that_moved_while_the_check_passes_is_news() -> None:
    def pm(value: int) -> CheckResult:
        r = _r("pmtu", "h1", "pass", "h2")
        return r.model_copy(update={"details": {"pmtu": value, "verdict": "ok"},
                                    "message": f"ok {value}"})

    g = diff.compare(report_of([pm(1500), _r("drops", "h1", "pass")]),
                     report_of([pm(1400), _r("drops", "h1", "pass")]))
    assert _keys(g["moved"]) == ["pmtu h1->h2"] and _keys(g["same"]) == ["drops h1"]
    assert not diff.broke(g)
    text = diff.render(report_of([pm(1500)]), report_of([pm(1400)]), g, width=120)
    assert "Moved (1)" in text and "pmtu 1500" in text and "pmtu 1400" in text


def test_show_writes_one_html_page_with_the_tables(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = _r("mtu", "overlay0", "fail", vni=4096).model_copy(
        update={"message": "ip link add vxlan4096 ... dev <underlay-if>"})
    src = tmp_path / "r.json"
    src.write_text(report_of([bad, _r("drops", "h1", "pass")]).model_dump_json())
    assert cli.main(["show", str(src), "--html", str(tmp_path / "r.html")]) == 0
    assert "r.html: 2 results" in capsys.readouterr().out
    page = (tmp_path / "r.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert "Failures" in page and "dev &lt;underlay-if&gt;" in page and "<underlay-if>" not in page
    assert "color: #800000" in page  # the failure in red
