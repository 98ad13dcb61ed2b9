"""Markdown and self-contained HTML from one list of blocks, so the two show the same report.

Blocks: ("h1"|"h2"|"h3", text), ("p", text), ("list", [item]), ("table", DataFrame),
("figure", Drawn). A list item is a text, or (text, [text]) for a bullet with sub-bullets. Text may
use **bold** and `code`; table cells may use **bold**. The HTML embeds every figure as a base64 PNG;
the markdown links figures/<name>.png beside it.
"""
from __future__ import annotations

import base64
import html
import re

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1400px;margin:1.5em auto;padding:0 1em;color:#222;"
         "line-height:1.45}table{border-collapse:collapse;font-size:13px;margin:0.8em 0}th,td{padding:3px 8px;"
         "border-bottom:1px solid #ddd;text-align:left;vertical-align:top}th{background:#f3f3f3}"
         "img{max-width:100%;height:auto}figure{margin:1.2em 0}figcaption{font-size:13px;color:#555}"
         "code{background:#f3f3f3;padding:0 3px}.answers li{margin:0.3em 0}")


def inline(text: str) -> str:
    """The only inline markdown the report uses (**bold**, `code`) → HTML."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def render_markdown(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for kind, *content in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += [f"{'#' * int(kind[1])} {content[0]}", ""]
        elif kind == "p":
            lines += [content[0], ""]
        elif kind == "list":
            for text, subitems in map(_split_item, content[0]):
                lines += [f"- {text}"] + [f"  - {sub}" for sub in subitems]
            lines.append("")
        elif kind == "table":
            lines += [content[0].to_markdown(index=False, disable_numparse=True), ""]
        elif kind == "figure":
            figure = content[0]
            lines += [f"![{figure.title}](figures/{figure.name}.png)", "", f"*{figure.caption}*", ""]
    return "\n".join(lines)


def _split_item(item) -> tuple[str, list[str]]:
    return (item, []) if isinstance(item, str) else (item[0], list(item[1]))


def _list_html(items: list) -> str:
    parts = []
    for text, subitems in map(_split_item, items):
        nested = "<ul>" + "".join(f"<li>{inline(sub)}</li>" for sub in subitems) + "</ul>" if subitems else ""
        parts.append(f"<li>{inline(text)}{nested}</li>")
    return "<ul>" + "".join(parts) + "</ul>"


def _table_html(frame) -> str:
    table = frame.to_html(index=False, border=0, classes="table", escape=True)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", table)


def render_html(blocks: list[tuple], title: str = "recurrent-bench report") -> str:
    body: list[str] = []
    for kind, *content in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(content[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{inline(content[0])}</p>")
        elif kind == "list":
            body.append(_list_html(content[0]))
        elif kind == "table":
            body.append(_table_html(content[0]))
        elif kind == "figure":
            figure = content[0]
            data = base64.b64encode(figure.png).decode()
            body.append(f'<figure><img alt="{html.escape(figure.title)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{inline(figure.caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _markdown_table(lines: list[str]):
    """A pipe table (header, separator, rows) → DataFrame of its cells as written."""
    import pandas as pd

    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    header, rows = cells[0], [row for row in cells[2:] if len(row) == len(cells[0])]
    return pd.DataFrame(rows, columns=header)


def note_blocks(text: str) -> list[tuple]:
    """Study notes (markdown): blank-line separated paragraphs, headings of any level (shown as h3,
    under the report's own appendix heading), '- ' lists and pipe tables."""
    blocks: list[tuple] = []
    for chunk in (c.strip() for c in re.split(r"\n\s*\n", text)):
        if not chunk:
            continue
        heading = re.match(r"#{1,6} (.*)", chunk.split("\n", 1)[0])
        if heading:
            blocks.append(("h3", heading.group(1).strip()))
            blocks += note_blocks(chunk.split("\n", 1)[1] if "\n" in chunk else "")
        elif chunk.startswith("- "):
            blocks.append(("list", [" ".join(item.split()) for item in re.split(r"\n- |^- ", chunk) if item.strip()]))
        elif all(line.lstrip().startswith("|") for line in chunk.splitlines()) and chunk.count("\n") >= 1:
            blocks.append(("table", _markdown_table(chunk.splitlines())))
        else:
            blocks.append(("p", " ".join(chunk.split())))
    return blocks
