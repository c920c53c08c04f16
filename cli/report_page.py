"""The report's one HTML page: self-contained (its plots inlined as PNG data, its style inline, no script), so it
opens from a file, an e-mail or an S3 link alike."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from cli.report_figures import Plot

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 2em; }
.status { font-weight: 600; padding: 0.1em 0.5em; border-radius: 0.3em; }
.Succeeded { background: #dcf5dc; } .Failed, .Interrupted, .Incomplete, .Blocked, .Missing { background: #fbdcdc; }
.Cancelled { background: #eedcf5; } .Running, .Admitted, .Queued, .Waiting { background: #fdf3d0; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } dt { font-weight: 600; float: left; width: 9em; } dd { margin-left: 10em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; } figcaption { color: #555; font-size: 0.9em; }
.note { color: #555; font-size: 0.9em; }
"""


def _cell(value: Any) -> str:
    return html.escape("-" if value is None or value == "" else str(value))


def page(summary: dict[str, Any], seeds: list[dict[str, Any]], plots: list[Plot], out: Path, notes: list[str]) -> str:
    """The page's HTML; each plot's PNG (already in `out`) is read and inlined."""
    status = str(summary["status"])
    facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{_cell(v)}</dd>" for k, v in summary["facts"].items())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("seed", "status", "steps", "recoveries", "checkpoint", "reason"))
    rows = "".join(
        "<tr>"
        f"<td>{_cell(s['unit'])}</td><td><span class='status {html.escape(str(s['status']))}'>{_cell(s['status'])}</span></td>"
        f"<td>{_cell(s.get('steps'))}</td><td>{_cell(s.get('recoveries'))}</td><td>{_cell(s.get('checkpoint'))}</td>"
        f"<td>{_cell(s.get('reason'))}</td></tr>"
        for s in seeds
    )
    figures = "".join(
        f"<figure><h2>{html.escape(p.title)}</h2>"
        f"<img alt='{html.escape(p.title)}' src='data:image/png;base64,{base64.b64encode((out / p.file).read_bytes()).decode()}'>"
        f"<figcaption>{html.escape(p.caption)}</figcaption></figure>"
        for p in plots
    )
    remarks = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    title = html.escape(f"{summary['name']}: {status}")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(str(summary['name']))} <span class='status {html.escape(status)}'>{html.escape(status)}</span></h1>"
        f"<p class='note'>{html.escape(str(summary['subtitle']))}</p>"
        f"<h2>Outcome</h2><dl>{facts}</dl>{remarks}"
        f"<h2>Seeds</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f"{figures}</body></html>\n"
    )
