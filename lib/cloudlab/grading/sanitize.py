"""What a student wrote, made safe for the instructor's eyes: no script ever runs.

Formgrader's Manual Grading, the feedback pages and any report render student content as
HTML in the instructor's Jupyter origin; a script there holds the instructor's session.
Everything instructor tools render passes through here first:

* :func:`html` - an allow-list sanitizer (``nh3``, the Rust ``ammonia`` crate): plain
  formatting, tables, links and images only; no script, style, iframe, form, event
  handler, ``class``/``id``/``style`` attribute, or URL other than http(s), mailto and
  relative ones;
* :func:`markdown` - markdown rendered as nbconvert renders it (math kept for MathJax),
  then :func:`html`;
* :func:`notebook` - a notebook whose markdown and raw cells, outputs, attachments and
  widget state hold nothing active (JavaScript and widget outputs go; their plain text, or
  a note saying what was dropped, stays);
* :func:`cell` - a CSV cell a spreadsheet will not read as a formula (OWASP's advice).

The untouched notebook is kept for the record by the grading pipeline
(``course/originals/``), outside every folder formgrader renders.

>>> html('<img src=x onerror="alert(1)"><a href="javascript:alert(2)">hi</a>')
'<img src="x"><a rel="noopener noreferrer">hi</a>'
>>> cell("=HYPERLINK(\\"http://x\\")"), cell("-2+3"), cell(-2.5), cell("fine")
('\\'=HYPERLINK("http://x")', "'-2+3", -2.5, 'fine')
"""

from __future__ import annotations

import functools
import re
from typing import Any

TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd",
    "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2",
    "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre",
    "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "u", "ul", "var"})
ATTRIBUTES = {
    "*": {"title", "lang"},
    "a": {"href"}, "img": {"src", "alt", "width", "height"}, "ol": {"start"},
    "td": {"colspan", "rowspan", "align"}, "th": {"colspan", "rowspan", "align", "scope"},
    "col": {"span"}, "colgroup": {"span"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# removed together with everything inside them (other tags lose only the tag itself)
DROPPED_WITH_CONTENT = frozenset({
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "template",
    "noscript", "noembed", "noframes", "svg", "math", "textarea", "select", "title", "xmp"})

# What a notebook output may keep (anything else - JavaScript, widget views, SVG, PDF, any
# custom renderer's type - is dropped; text/plain stays as the record of what it was).
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
SAFE_OUTPUT_TYPES = ("text/plain", *IMAGE_TYPES)
SANITIZED_OUTPUT_TYPES = ("text/html", "text/markdown")
# Markdown with none of these is text, formatting and math only: left as it is. Anything
# else - HTML or an autolink, a link or image destination (a URL could say javascript:,
# spelt with entities or escapes too) - is rendered and sanitized. Bare URLs only ever
# become http(s) links; math is typeset by MathJax with its Safe extension (nbconvert's
# templates load it so).
_ACTIVE = re.compile(r"<|\]\s*[(:]")
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@functools.cache
def _cleaner():
    import nh3

    return nh3.Cleaner(tags=set(TAGS), attributes={k: set(v) for k, v in ATTRIBUTES.items()},
                       url_schemes=set(URL_SCHEMES), clean_content_tags=set(DROPPED_WITH_CONTENT),
                       strip_comments=True, link_rel="noopener noreferrer")


def html(text: str) -> str:
    """``text`` with only the allow-listed tags, attributes and URL schemes left.

    >>> html("<p onclick=x()>ok<script>bad()</script><iframe src=/x></iframe></p>")
    '<p>ok</p>'
    """
    return _cleaner().clean(str(text))


def markdown(text: str) -> str:
    """Markdown as the safe HTML an instructor sees (rendered the way nbconvert does).

    >>> markdown("**Hi** <img src=x onerror=alert(1)> [x](javascript:alert(2))")
    '<p><strong>Hi</strong> <img src="x"> <a rel="noopener noreferrer">x</a></p>'
    """
    return html(_markdown_renderer().render(str(text))).strip()


@functools.cache
def _markdown_renderer():
    """nbconvert's own markdown (math kept for MathJax), built once: its plugins are slow to
    load, and a parser keeps no state between documents."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    return MarkdownWithMath(renderer=IPythonRenderer(escape=False))


def _as_markdown(text: str) -> str:
    """Markdown that renders to exactly the safe HTML of ``text``: one raw HTML block (no
    blank line can end it, so no markdown parser reads inside it)."""
    if not _ACTIVE.search(text):
        return text
    safe = markdown(text).replace("\r", "").replace("\n", "&#10;")
    return text if safe == text else f"<div>{safe}</div>"  # equal: made safe here before


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _output(out: dict) -> tuple[dict, list[str]]:
    """A safe copy of one output, and the media types that were dropped."""
    if out.get("output_type") not in ("display_data", "execute_result"):
        return out, []  # streams and errors: plain text, escaped by every renderer
    data = out.get("data") or {}
    kept: dict[str, Any] = {}
    for kind in SAFE_OUTPUT_TYPES:
        if isinstance(data.get(kind), (str, list)):
            kept[kind] = data[kind]
    for kind in SANITIZED_OUTPUT_TYPES:
        value = data.get(kind)
        if isinstance(value, (str, list)):
            text = "".join(value) if isinstance(value, list) else value
            kept[kind] = html(text) if kind == "text/html" else _as_markdown(text)
    dropped = sorted(set(data) - set(kept))
    if not kept:
        kept["text/plain"] = f"[output not shown to instructors: {', '.join(dropped)}]"
    meta = out.get("metadata") or {}
    node = type(out)  # an nbformat NotebookNode stays one
    safe = node(out)
    safe["data"] = node(kept)
    safe["metadata"] = node({k: v for k, v in meta.items()  # isolated: an iframe
                             if k in kept and isinstance(v, dict) and not v.get("isolated")})
    return safe, dropped


def notebook(nb: Any) -> list[str]:
    """Make ``nb`` (nbformat or plain dict, changed in place) safe to render; what it did.

    >>> nb = {"metadata": {}, "cells": [
    ...     {"cell_type": "markdown", "metadata": {}, "source": "<img src=x onerror=go()>"},
    ...     {"cell_type": "code", "metadata": {}, "source": "", "outputs": [
    ...         {"output_type": "display_data", "metadata": {},
    ...          "data": {"application/javascript": "go()", "text/plain": "<JS>"}}]}]}
    >>> notebook(nb)
    ['cell 0: markdown sanitized', 'cell 1: output dropped application/javascript']
    >>> nb["cells"][0]["source"], nb["cells"][1]["outputs"][0]["data"]
    ('<div><img src="x"></div>', {'text/plain': '<JS>'})
    """
    done: list[str] = []
    meta = nb.get("metadata") or {}
    if "widgets" in meta:
        del meta["widgets"]
        done.append("notebook: widget state dropped")
    for index, cell in enumerate(nb.get("cells") or []):
        kind = cell.get("cell_type")
        if kind in ("markdown", "raw"):
            source = _source(cell)
            safe = _as_markdown(source) if kind == "markdown" else html(source)
            if safe != source:
                cell["source"] = safe
                done.append(f"cell {index}: {kind} sanitized")
        attachments = cell.get("attachments") or {}
        for name in list(attachments):
            if not attachments[name] or set(attachments[name]) - set(IMAGE_TYPES):
                del attachments[name]
                done.append(f"cell {index}: attachment {name} dropped")
        if kind == "code":
            safe_outputs = []
            for out in cell.get("outputs") or []:
                clean, dropped = _output(out)
                if dropped:
                    done.append(f"cell {index}: output dropped {', '.join(dropped)}")
                elif clean.get("data") != out.get("data"):
                    done.append(f"cell {index}: output sanitized")
                safe_outputs.append(clean)
            if safe_outputs:
                cell["outputs"] = safe_outputs
    return done


def cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet evaluates: text starting with ``= + - @``, a tab or a
    carriage return gets a leading single quote (OWASP, CSV injection). Numbers stay.

    >>> cell("@SUM(A1)"), cell("\\t=1"), cell(3)
    ("'@SUM(A1)", "'\\t=1", 3)
    """
    if isinstance(value, str) and value.startswith(CSV_TRIGGERS):
        return "'" + value
    return value


def row(values: dict[str, Any]) -> dict[str, Any]:
    """Every cell of a ``csv.DictWriter`` row made safe (:func:`cell`)."""
    return {k: cell(v) for k, v in values.items()}
