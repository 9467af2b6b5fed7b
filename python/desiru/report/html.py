"""The report page: one self-contained HTML file (plotly.js, styles and scripts inlined).

A Content-Security-Policy in the page forbids every request (no script, style, image or
font may come from anywhere but the page itself), so the report opens the same on a
machine with no network, and a stray URL would be refused rather than fetched. Our own
script only sorts the table, links a clicked point to its trial and notes render errors.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from desiru._version import __version__
from desiru.journal.runs import Trial
from desiru.report.data import DiffSummary, RunData, short
from desiru.report.extra import require

#: no request may leave the page: everything it needs is inline
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
       "font-src data:; connect-src 'none'")
#: demos listed per module and side before "and N more"
DEMOS_SHOWN = 20

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:16px 0 6px}
.sub{color:#5d6675;margin:0 0 12px}.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 16px}
.warn{background:#fff4e5;border:1px solid #f0b35b;border-radius:8px;padding:10px 14px;margin:12px 0}
.error{background:#fde8e8;border:1px solid #e08080;border-radius:8px;padding:10px 14px;margin:12px 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0}dt{color:#5d6675}dd{margin:0}
.grid{display:grid;grid-template-columns:1fr;gap:16px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border-bottom:1px solid #e6e9ee;padding:5px 8px;text-align:left;vertical-align:top}
th{cursor:pointer;user-select:none;background:#eef1f5;position:sticky;top:0}th.asc:after{content:" ▲"}
th.desc:after{content:" ▼"}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#fdebe6;font-weight:600}tr.picked td{outline:2px solid #5b7fbf}
.scroll{max-height:520px;overflow:auto;border:1px solid #dde1e7;border-radius:8px}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}pre{white-space:pre-wrap;margin:2px 0}
.del{background:#fdecec;border-left:3px solid #d9534f;padding:6px 10px;margin:4px 0}
.ins{background:#eaf7ee;border-left:3px solid #2a9d4b;padding:6px 10px;margin:4px 0}
#selected{min-height:2.5em}.muted{color:#7a8290}
"""

SCRIPT = """
(function(){
  var errors=[];
  var banner=function(msg){errors.push(msg);var b=document.getElementById('errors');if(!b){return;}
    b.hidden=false;b.textContent=errors.join(' | ');document.body.dataset.errors=errors.length;};
  window.addEventListener('error',function(e){banner('This report did not render fully: '+e.message);});
  var plotted=0;
  window.desiruPlotted=function(id){
    document.getElementById(id).on('plotly_click',function(ev){
      var p=ev.points[0];window.desiruSelect(p.customdata,p.hovertext);});
    plotted+=1;if(plotted===+document.body.dataset.figures){
      document.body.dataset.rendered=Math.round(performance.now());}
  };
  window.desiruSelect=function(seq,text){
    var panel=document.getElementById('selected');panel.innerHTML=text||('seq '+seq);
    var cmd=document.createElement('pre');
    cmd.textContent='desiru replay '+document.body.dataset.run+'@seq:'+seq+' -o candidate.json';
    panel.appendChild(cmd);
    var old=document.querySelector('tr.picked');if(old){old.classList.remove('picked');}
    var row=document.getElementById('seq-'+seq);if(row){row.classList.add('picked');}
    history.replaceState(null,'','#seq-'+seq);
  };
  document.addEventListener('DOMContentLoaded',function(){
  if(errors.length){banner(errors.pop());}
  var row=location.hash&&document.getElementById(location.hash.slice(1));if(row){row.classList.add('picked');}
  document.querySelectorAll('table.sortable th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var table=th.closest('table'),body=table.tBodies[0],rows=Array.from(body.rows);
      var desc=!th.classList.contains('desc');
      table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(desc?'desc':'asc');
      var key=function(r){var v=r.cells[col].dataset.v;var n=parseFloat(v);
        return v===''||v===undefined?null:(isNaN(n)?v:n);};
      rows.sort(function(a,b){var x=key(a),y=key(b);if(x===null)return 1;if(y===null)return -1;
        var c=x<y?-1:x>y?1:0;return desc?-c:c;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(first: float | None, last: float | None) -> str:
    if not first or not last:
        return "-"
    seconds = int(last - first)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    took = f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{s}s"
    return f"{_when(first)} to {_when(last)} ({took})"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n:,} B" if unit == "B" else f"{size:.1f} {unit} ({n:,} bytes)"
        size /= 1000
    return f"{n:,} B"


def facts_html(data: RunData) -> str:
    """The run's facts as a definition list."""
    f = data.facts
    enc = f.encryption
    encryption = "none" if not enc else f"{_e(enc.get('cipher', 'AES-256-GCM'))}, key id {_e(enc.get('key_id'))}"
    best = data.best
    rows = [
        ("journal", f"<code>{_e(f.path)}</code>"),
        ("trials", f"{f.trials:,} ({f.scored:,} scored)"),
        ("best", "-" if best is None else f"seq {best.seq}, {_e(data.metric or 'score')} "
                                            f"{best.value(data.metric):.6g} ({data.mode})"),
        ("time span", _e(_span(f.first_timestamp, f.last_timestamp))),
        ("writers", ", ".join(f"{_e(w)} ({n:,})" for w, n in f.writers.items()) or "-"),
        ("journal size", _e(_size(f.size))),
        ("last seq", f"{f.head:,}"),
        ("encryption", encryption),
        ("tags", ", ".join(f"{_e(k)} → seq {v}" for k, v in sorted(f.tags.items())) or "-"),
    ]
    return "<dl class=facts>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _num(value: float | None) -> str:
    if value is None:
        return "<td class=num data-v=''>-</td>"
    return f"<td class=num data-v='{value!r}'>{value:.6g}</td>"


def table_html(data: RunData) -> str:
    """The top trials, best first, as a table sortable by any column (click a heading)."""
    heads = ["rank", "seq", "parent", "score", *data.metrics, "params", "tags", "time"]
    out = ["<table class=sortable id=top-trials><thead><tr>"]
    out += [f"<th>{_e(h)}</th>" for h in heads]
    out.append("</tr></thead><tbody>")
    best = data.best.seq if data.best is not None else None
    for rank, t in enumerate(data.top, 1):
        cls = " class=best" if t.seq == best else ""
        cells = [f"<td class=num data-v='{rank}'>{rank}</td>", f"<td class=num data-v='{t.seq}'>{t.seq}</td>",
                 f"<td class=num data-v='{'' if t.parent is None else t.parent}'>{t.parent or '-'}</td>",
                 _num(t.score), *(_num(t.metrics.get(m)) for m in data.metrics),
                 f"<td data-v='{_e(short(dict(t.params), 300))}'><code>{_e(_params(t))}</code></td>",
                 f"<td data-v='{_e(','.join(t.tags))}'>{_e(', '.join(t.tags))}</td>",
                 f"<td data-v='{t.timestamp!r}'>{_e(_when(t.timestamp))}</td>"]
        out.append(f"<tr id=seq-{t.seq}{cls}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _params(t: Trial) -> str:
    return " ".join(f"{k}={short(v, 60)}" for k, v in t.params.items()) or "-"


def diff_html(diff: DiffSummary | None) -> str:
    """The best against the first commit: instructions, demos added and removed, parameters."""
    if diff is None:
        return "<p class=muted>No trial has a score yet, so there is no best to compare.</p>"
    out = [f"<p class=sub>seq {diff.base} (first commit) → seq {diff.target} (best): "
           f"{diff.edits:,} edit{'s' if diff.edits != 1 else ''}</p>"]
    if diff.note:
        out.append(f"<p class=warn>{_e(diff.note)}</p>")
    if diff.edits == 0 and not diff.note:
        out.append("<p>The best is the first commit's program: nothing changed.</p>")
    for ch in diff.modules:
        out.append(f"<div class=card><h3><code>{_e(ch.path)}</code></h3>")
        if ch.instructions is not None:
            old, new = ch.instructions
            out.append("<div>instructions</div>")
            out.append(f"<div class=del><pre>{_e(old or '(none)')}</pre></div>")
            out.append(f"<div class=ins><pre>{_e(new or '(none)')}</pre></div>")
        for label, demos, cls in (("demos added", ch.demos_added, "ins"), ("demos removed", ch.demos_removed, "del")):
            if demos:
                out.append(f"<div>{label}: {len(demos):,}</div><div class={cls}>")
                out += [f"<pre>{_e(short(d, 400))}</pre>" for d in demos[:DEMOS_SHOWN]]
                if len(demos) > DEMOS_SHOWN:
                    out.append(f"<div class=muted>and {len(demos) - DEMOS_SHOWN:,} more</div>")
                out.append("</div>")
        if ch.parameters:
            out.append("<div>parameters</div><table><thead><tr><th>name</th><th>first commit</th><th>best</th>"
                       "</tr></thead><tbody>")
            for key, old, new, how in ch.parameters:
                was = "(unset)" if how == "set" else _e(short(old, 120))
                now = "(unset)" if how == "unset" else _e(short(new, 120))
                out.append(f"<tr><td><code>{_e(key)}</code></td><td>{was}</td><td>{now}</td></tr>")
            out.append("</tbody></table>")
        if ch.other:
            out.append("<ul>" + "".join(f"<li>{_e(o)}</li>" for o in ch.other) + "</ul>")
        out.append("</div>")
    return "".join(out)


def figure_html(fig: Any, div_id: str) -> str:
    """One figure as a div and the script that draws it (plotly.js itself is in the page's head)."""
    pio = require("plotly.io")
    return str(pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                           config={"displaylogo": False, "responsive": True},
                           post_script="window.desiruPlotted('{plot_id}');", validate=False))


def page(data: RunData, figs: dict[str, Any], *, title: str | None = None) -> str:
    """The whole report as one HTML string."""
    offline = require("plotly.offline")
    f = data.facts
    title = title or f"desiru run report: {f.path}"
    warn = ""
    if f.encryption:
        warn = ("<div class=warn id=decrypted><b>This report holds decrypted content</b> of an encrypted journal "
                f"(key id {_e(f.encryption.get('key_id'))}): instructions, demos, params and scores in clear text. "
                "Keep it as you keep the key, and do not share it where the journal could not go.</div>")
    plots = "".join(f"<div class=card>{figure_html(fig, f'{name}-plot')}</div>" for name, fig in figs.items())
    return f"""<!DOCTYPE html>
<html lang=en><head><meta charset=utf-8>
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name=viewport content="width=device-width, initial-scale=1">
<meta name=generator content="desiru {_e(__version__)}">
<title>{_e(title)}</title><style>{STYLE}</style>
<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script>{offline.get_plotlyjs()}</script>
<script>{SCRIPT}</script>
</head>
<body data-run="{_e(f.path)}" data-figures="{len(figs)}" data-trials="{f.trials}" data-best="{data.best.seq
    if data.best else ''}"><main>
<h1>{_e(title)}</h1>
<p class=sub>Written {_e(_when(dt.datetime.now(dt.timezone.utc).timestamp()))} by desiru {_e(__version__)}.
Click a point to see its trial; hover for score, metrics and params.</p>
<div class=error id=errors hidden></div>
{warn}
<h2>Run</h2><div class=card>{facts_html(data)}</div>
<h2>Score over trials and lineage</h2>
<div class=card id=selected><span class=muted>Click a point to see its trial here.</span></div>
<div class=grid>{plots}</div>
<h2>Top {len(data.top):,} trials</h2>
<p class=sub>Best first by {_e(data.metric or 'score')} ({data.mode}); click a heading to sort.</p>
<div class=scroll>{table_html(data)}</div>
<h2>Best against the first commit</h2>
{diff_html(data.diff)}
</main>
</body></html>
"""


__all__ = ["CSP", "page"]
