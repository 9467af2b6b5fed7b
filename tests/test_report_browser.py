"""A run report opened in a real browser: Debian's headless Chromium renders the page of a tracked
run with the network cut off, and the rendered DOM is read back.

Chromium is part of the test environment (.ci/run installs it): when it is missing these tests
fail and say how to install it; they never skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tracked_run import write_run

from desiru.journal import Journal
from desiru.report import write_report

#: the network is cut for the page: no name resolves and the proxy leads nowhere
NO_NETWORK = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost", "--proxy-server=http://127.0.0.1:9",
              "--proxy-bypass-list=<-loopback>"]
#: a probe appended to a copy of the page: what it fetched, and what our scripts do when used
PROBE = """<script>
window.addEventListener('load', function(){ setTimeout(function(){
  var b = document.body;
  b.dataset.resources = JSON.stringify(performance.getEntriesByType('resource').map(function(e){return e.name;}));
  var plot = document.getElementById('score-plot');
  var pt = plot.data[0];
  plot.emit('plotly_click', {points: [{customdata: pt.customdata[0], hovertext: pt.hovertext[0]}]});
  b.dataset.selected = document.getElementById('selected').textContent;
  var heads = document.querySelectorAll('#top-trials th');
  heads[1].click();  // seq: descending first
  b.dataset.sortedDesc = document.querySelector('#top-trials tbody tr').id;
  heads[1].click();  // then ascending
  b.dataset.sortedAsc = document.querySelector('#top-trials tbody tr').id;
}, 0); });
</script></body>"""


def chromium() -> str:
    """The Chromium binary, or a failure saying how to install it (CI installs it in .ci/run)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("headless Chromium is needed to test the run report and is not installed: "
                    "`apt-get update && apt-get install -y chromium` (bash .ci/run does this on a fresh machine)")
    return found


def open_page(page: Path, *extra: str) -> tuple[str, str]:
    """(rendered DOM, browser log) of ``page`` opened by headless Chromium with no network."""
    res = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", *NO_NETWORK,
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout, res.stderr


def console(log: str) -> list[str]:
    """The page's console messages in a Chromium log (errors, CSP refusals, anything it printed)."""
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def trace_points(dom: str, uid: str) -> int:
    """How many markers the plotly trace ``uid`` drew in the rendered SVG."""
    start = dom.index(f'class="trace scatter trace{uid}"')
    end = dom.find('class="trace scatter', start + 1)
    return dom[start: end if end != -1 else len(dom)].count('<path class="point')


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, object]:
    folder = tmp_path_factory.mktemp("browser")
    run = folder / "run.journal"
    write_run(run, 40)
    with Journal.open(run, readonly=True) as j:
        write_report(j, folder / "report.html")
        return folder / "report.html", j.trials(), j.best()


def test_chromium_renders_every_trial_and_the_best_row(report: tuple[Path, list, object]) -> None:
    page, trials, best = report
    dom, log = open_page(page, "--dump-dom")
    assert console(log) == [], console(log)  # no error, and no request refused by the page's policy
    assert re.search(r'<body[^>]* data-rendered="\d+"', dom), "the figures did not finish drawing"
    assert "data-errors" not in dom and 'id="errors" hidden' in dom  # our error banner stayed hidden
    # one point per trial in the score plot and one node per candidate in the lineage tree
    assert trace_points(dom, "trials") == len(trials) == 40
    assert trace_points(dom, "candidates") == 40
    assert trace_points(dom, "best") == 1
    # the table's first row, rendered, is Journal.best()
    body = dom[dom.index('id="top-trials"'):]
    first = re.search(r"<tbody><tr([^>]*)>(.*?)</tr>", body, re.S)
    assert first is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", first.group(2), re.S)
    assert f'id="seq-{best.seq}"' in first.group(1) and 'class="best"' in first.group(1)  # type: ignore[attr-defined]
    assert cells[1] == str(best.seq) and float(cells[3]) == pytest.approx(best.score, rel=1e-5)  # type: ignore[attr-defined]


def test_no_request_leaves_the_page_and_our_scripts_work(report: tuple[Path, list, object], tmp_path: Path) -> None:
    page, trials, _best = report
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE))
    dom, log = open_page(probed, "--dump-dom")
    assert console(log) == [], console(log)
    resources = re.search(r'data-resources="([^"]*)"', dom)
    assert resources is not None and resources.group(1) == "[]", resources
    # a clicked point shows its trial and how to replay it; the table sorts by a clicked heading
    selected = re.search(r'data-selected="([^"]*)"', dom)
    assert selected is not None and f"seq {trials[0].seq}" in selected.group(1)
    assert f"@seq:{trials[0].seq} -o candidate.json" in selected.group(1)
    seqs = [int(s) for s in re.findall(r'<tr id="seq-(\d+)"', dom)]
    assert re.search(r'data-sorted-desc="seq-(\d+)"', dom).group(1) == str(max(seqs))  # type: ignore[union-attr]
    assert re.search(r'data-sorted-asc="seq-(\d+)"', dom).group(1) == str(min(seqs))  # type: ignore[union-attr]


def test_a_page_that_asks_the_network_is_caught(tmp_path: Path) -> None:
    """The checks above can fail: a report that loads one outside image shows up in the log."""
    page = tmp_path / "leaky.html"
    from desiru.report.html import CSP

    page.write_text(f'<html><head><meta http-equiv="Content-Security-Policy" content="{CSP}"></head>'
                    '<body><img src="https://example.com/x.png"></body></html>')
    _dom, log = open_page(page, "--dump-dom")
    assert any("example.com/x.png" in line for line in console(log))


def test_a_screenshot_of_the_report(report: tuple[Path, list, object], tmp_path: Path) -> None:
    page, _trials, _best = report
    shot = tmp_path / "shot.png"
    open_page(page, f"--screenshot={shot}", "--window-size=1280,1400", "--hide-scrollbars")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a drawn page, not a blank one
