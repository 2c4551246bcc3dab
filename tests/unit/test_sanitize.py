"""What instructors render of a student's work holds nothing that runs, and stays readable."""

import re

import nbformat
import pytest

from cloudlab.grading import sanitize

ATTACKS = [
    '<img src=x onerror="alert(1)">', "<script>alert(1)</script>", "<IMG SRC=JaVaScRiPt:alert(1)>",
    '<a href="&#106;avascript:alert(1)">x</a>', '<a href=" javascript:alert(1)">x</a>',
    '<a href="java\tscript:alert(1)">x</a>', "<svg onload=alert(1)>", '<iframe src="/x">',
    '<iframe srcdoc="<script>alert(1)</script>">', "<object data=x>", "<embed src=x>",
    '<form action="/api/x"><input name=a><button>go</button></form>', "<base href=//evil>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">', "<style>*{}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>', "<details open ontoggle=alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    '<div id="submission_id" class="fixed-top" name="x">DOM clobbering</div>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>', "<template><img src=x onerror=a()>",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_nothing_active_survives(text):
    clean = sanitize.html(text).lower()
    for word in ("<script", "<iframe", "<svg", "<object", "<embed", "<form", "<base", "<meta",
                 "<style", "<math", "<template", "onerror", "onload", "ontoggle",
                 "javascript:", "data:", "style=", "id=", "class=", "name="):
        assert word not in clean, (text, clean)


def test_plain_formatting_tables_links_and_images_stay():
    text = ('<p><b>bold</b> <em>em</em> <code>x&lt;y</code></p><table><tr><td colspan="2">'
            'cell</td></tr></table><a href="https://example.org/a">link</a> <img src="plot.png" '
            'alt="a plot">')
    clean = sanitize.html(text)
    for part in ("<b>bold</b>", "<code>x&lt;y</code>", '<td colspan="2">cell</td>',
                 'href="https://example.org/a"', '<img src="plot.png" alt="a plot">'):
        assert part in clean, clean


def test_markdown_renders_like_nbconvert_and_loses_only_the_active_parts():
    md = "# Why\n\n1. *because* $a_1 + b_2$\n\n```\nx < y\n\nz\n```\n[js](javascript:alert(1))"
    out = sanitize.markdown(md)
    assert "<h1>Why" in out and "<em>because</em>" in out and "$a_1 + b_2$" in out
    assert "x &lt; y\n\nz" in out and "javascript" not in out


def _nb(*cells, **meta):
    nb = nbformat.v4.new_notebook(metadata=meta)
    nb.cells = list(cells)
    return nb


def test_a_notebook_keeps_plain_markdown_as_it_was_and_renders_the_rest_safely():
    plain = nbformat.v4.new_markdown_cell("**Q1** Write `add(a, b)`.\n\n- one\n- two")
    hostile = nbformat.v4.new_markdown_cell("Answer\n\n<img src=x onerror=alert(1)>\n\n"
                                            "```\ncode\n\nmore\n```")
    nb = _nb(plain, hostile)
    assert sanitize.notebook(nb) == ["cell 1: markdown sanitized"]
    assert plain.source == "**Q1** Write `add(a, b)`.\n\n- one\n- two"
    assert "\n" not in hostile.source and "onerror" not in hostile.source
    # one raw HTML block: rendering it again as markdown changes nothing
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    assert markdown2html_mistune(hostile.source).strip() == hostile.source
    assert "<pre><code>code&#10;&#10;more&#10;</code></pre>" in hostile.source
    assert sanitize.notebook(nb) == [], "a sanitized notebook is left as it is"


@pytest.mark.parametrize("source", [
    "[harmless words](javascript:alert(1))", "[words][r]\n\n[r]: javascript:alert(1)",
    "![a plot](javascript:alert(1))", "<JAVASCRIPT:alert(1)>", "[x](&#106;avascript:a())",
    "[x](javascript\\:a())"])
def test_a_markdown_link_cannot_carry_javascript(source):
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    cell = nbformat.v4.new_markdown_cell(source)
    sanitize.notebook(_nb(cell))
    shown = markdown2html_mistune(cell.source)
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*(&#\w+;|java)""", shown, re.I), shown


def test_outputs_keep_text_and_images_and_lose_scripts_widgets_and_iframes():
    outputs = [
        nbformat.v4.new_output("display_data", {"application/javascript": "alert(1)",
                                                "text/plain": "<IPython.Javascript>"}),
        nbformat.v4.new_output("display_data", {
            "application/vnd.jupyter.widget-view+json": {"model_id": "x"}}),
        nbformat.v4.new_output("execute_result", {"text/html": "<b>t</b><script>a()</script>",
                                                  "image/png": "iVBORw0KGgo=",
                                                  "image/svg+xml": "<svg onload=a()/>"},
                               metadata={"text/html": {"isolated": True}}, execution_count=1),
        nbformat.v4.new_output("stream", text="<script>shown as text</script>"),
    ]
    code = nbformat.v4.new_code_cell("x", outputs=outputs)
    md = nbformat.v4.new_markdown_cell("pic", attachments={
        "a.png": {"image/png": "iVBORw0KGgo="}, "b.svg": {"image/svg+xml": "<svg/>"}})
    nb = _nb(md, code, widgets={"application/vnd.jupyter.widget-state+json": {}})
    done = sanitize.notebook(nb)
    assert "notebook: widget state dropped" in done and "cell 0: attachment b.svg dropped" in done
    js, widget, result, stream = code.outputs
    assert js.data == {"text/plain": "<IPython.Javascript>"}
    assert widget.data == {"text/plain": "[output not shown to instructors: "
                                         "application/vnd.jupyter.widget-view+json]"}
    assert result.data == {"text/html": "<b>t</b>", "image/png": "iVBORw0KGgo="}
    assert result.metadata == {} and result.execution_count == 1
    assert stream.text == "<script>shown as text</script>", "streams are escaped by renderers"
    assert list(md.attachments) == ["a.png"] and "widgets" not in nb.metadata
    nbformat.validate(nb)


@pytest.mark.parametrize("value, expected", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1+1", "'+1+1"),
    ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("a=1", "a=1"), ("", ""), (6.0, 6.0), (-1, -1), (None, None)])
def test_csv_cells_never_start_a_formula(value, expected):
    assert sanitize.cell(value) == expected


def test_nbconvert_sanitizes_in_formgrader_and_in_our_converters(tmp_path):
    """nbgrader's own switch (its HTMLExporter, used by formgrader and generate_feedback)
    is on in the course's config and in the config cloudlab's converters get."""
    from traitlets.config import PyFileConfigLoader

    from cloudlab.grading import Course
    from tests.conftest import ROOT

    loaded = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert loaded.HTMLExporter.sanitize_html is True
    assert loaded.Execute.store_widget_state is False
    assert Course(tmp_path).config().HTMLExporter.sanitize_html is True
