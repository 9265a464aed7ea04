"""The report's renderers: every block prints its text escaped, links cannot carry a scheme, and Markdown keeps
figures such as "12.19 MiB" and "--input-size" as written while neutralising what would be markup."""

from __future__ import annotations

import re

from spaghettinet.evaluation.document import (
    Advice,
    AdviceItem,
    KeyFigure,
    KeyFigures,
    Link,
    Section,
    Table,
    escape_href,
    escape_markdown,
    render_html,
    render_markdown,
)

HOSTILE = '<img src=x onerror="alert(1)">'


def test_escape_markdown_neutralises_links_and_html():
    text = escape_markdown("[click](http://evil) ![i](x.png)\n# <b>&amp; <http://a>")
    assert re.search(r"(?<!\\)[\[\]]", text) is None  # every bracket escaped: no link, no image
    assert "<" not in text and "\n" not in text
    assert text.startswith("\\[click\\](http://evil)")
    assert "&amp;amp;" in text  # an entity in a name is shown as written


def test_escape_markdown_escapes_list_markers_and_rules_only_where_they_act():
    assert escape_markdown("- item") == "\\- item"
    assert escape_markdown("+ item") == "\\+ item"
    assert escape_markdown("12. item") == "12\\. item"
    assert escape_markdown("3) item") == "3\\) item"
    assert escape_markdown("(2/255)") == "(2/255)"
    assert escape_markdown("---") == "\\---"
    assert escape_markdown("===") == "\\==="
    # Not markers: left as written.
    assert escape_markdown("12.19 MiB") == "12.19 MiB"
    assert escape_markdown("--input-size 320") == "--input-size 320"
    assert escape_markdown("-1") == "-1"


def test_escape_href_keeps_relative_paths_and_encodes_schemes():
    assert escape_href("../exported/model_card.md") == "../exported/model_card.md"
    assert escape_href("javascript:alert(1)") == "javascript%3Aalert%281%29"
    assert escape_href('a"b<c>.md') == "a%22b%3Cc%3E.md"


def test_html_blocks_escape_their_text():
    sections = [
        Section(
            "Verdict",
            [
                KeyFigures([KeyFigure(HOSTILE, "0.5", HOSTILE)]),
                Advice([AdviceItem(HOSTILE, HOSTILE)]),
                Link(HOSTILE, 'javascript:alert(1)"'),
                Table([HOSTILE], [[HOSTILE]]),
            ],
        ),
        Section("Other", []),
    ]
    page = render_html("t", sections, contents=True)
    assert "<img" not in page and "javascript:" not in page
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 7  # every string of every block
    assert '<nav><a href="#other">Other</a></nav>' in page
    assert '<div class="scroll"><table>' in page  # a wide table scrolls in its box, not the page


def test_markdown_blocks_escape_their_text():
    text, figures = render_markdown(
        "t",
        [
            Section(
                "Verdict",
                [
                    KeyFigures([KeyFigure("AP50", "0.86", "int8, 60 test images")]),
                    Advice([AdviceItem("Few [objects](x)", "Add photos of *cats*")]),
                    Link("card", "../exported/model card.md"),
                ],
            )
        ],
    )
    assert figures == {}
    assert "- **AP50: 0.86** (int8, 60 test images)" in text
    assert "1. Few \\[objects\\](x) **What to do:** Add photos of \\*cats\\*" in text
    assert "[card](../exported/model%20card.md)" in text
