"""The report's document model and its two renderers: the one place where untrusted text is escaped.

A report (and the model card) is a list of :class:`Section` objects holding blocks: paragraphs, notices, lists,
tables, figures, key figures, advice and links. Blocks hold *plain text*; :func:`render_html` and
:func:`render_markdown` escape every string they print, with :func:`escape_html` and :func:`escape_markdown`
respectively, and nothing else writes markup. So a class called ``<img src=x onerror=...>`` or ``[x](javascript:)``
stays text in both formats. The HTML page also carries a Content-Security-Policy that forbids scripts and anything
external (images are ``data:`` URIs), so even a mistake in escaping could not run code or fetch anything.

Example:
    >>> page = render_html("t", [Section("Dataset", [Paragraph("<b>cat</b>")])])
    >>> "&lt;b&gt;cat&lt;/b&gt;" in page
    True
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass
class Paragraph:
    text: str


@dataclass
class Lead:
    """A paragraph set larger: the one-sentence verdict."""

    text: str


@dataclass
class Notice:
    """A missing-input or warning line, shown highlighted."""

    text: str


@dataclass
class BulletList:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    """An image: ``data`` is PNG or JPEG bytes, ``filename`` the name it gets beside ``report.md``."""

    data: bytes
    mime: str
    filename: str
    caption: str


@dataclass
class Preformatted:
    text: str


@dataclass
class KeyFigure:
    """One headline number: ``value`` (e.g. ``"0.86"``), what it is (``label``) and a short ``note``."""

    label: str
    value: str
    note: str = ""


@dataclass
class KeyFigures:
    """Headline numbers shown side by side (tiles in HTML, a list in Markdown)."""

    items: list[KeyFigure]


@dataclass
class AdviceItem:
    """A problem and what to do about it."""

    problem: str
    action: str


@dataclass
class Advice:
    """A numbered list of problems, each with its action."""

    items: list[AdviceItem]


@dataclass
class Link:
    """A link to a file beside the report: ``href`` is a relative path (percent-encoded when rendered)."""

    text: str
    href: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """The section's id in the HTML page (from its title, which is ours, never a user's text)."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


def format_number(value: object, digits: int = 3) -> str:
    """A value for a table cell: ``–`` for None and pycocotools' -1 ("no such objects"), floats to ``digits``.

    Example:
        >>> format_number(0.51234), format_number(None), format_number(-1.0), format_number(7)
        ('0.512', '–', '–', '7')
    """
    if value is None:
        return "–"
    if isinstance(value, bool | int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "nan"
    if number == -1:
        return "–"
    return f"{number:.{digits}f}"


def format_bytes(size: int) -> str:
    """A file size in B, KiB or MiB.

    Example:
        >>> format_bytes(4_119_951)
        '3.93 MiB'
    """
    if size >= 1024**2:
        return f"{size / 1024**2:.2f} MiB"
    if size >= 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size} B"


# --------------------------------------------------------------------------------------------------------------
# Escaping
# --------------------------------------------------------------------------------------------------------------


def escape_html(text: object) -> str:
    """Escape any value for HTML text and attribute values (``<``, ``>``, ``&``, both quotes)."""
    return html.escape(str(text), quote=True)


# Characters with a meaning anywhere in a line. "(", ")" and "!" are left alone: they only make a link or an image
# next to a "[" or "]", which are always escaped. "-", "+" and "1." start a list only at the beginning of a line and
# before a space (CommonMark), and a line of only "-" or "=" is a rule or a heading underline: only those are escaped,
# so "12.19 MiB", "(2/255)" and "--input-size" stay as written.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|~>])")
_MARKDOWN_LINE_START = re.compile(r"^(\s*)([-+]|\d{1,9}[.)])(?=\s|$)|^(\s*)([-=])(?=[-=\s]*$)")


def escape_markdown(text: object) -> str:
    """Make any value literal text in Markdown (CommonMark/GFM), also inside a table cell.

    ASCII punctuation with a meaning is backslash-escaped (``[`` and ``]`` always, so no link or image can form),
    ``<`` and ``&`` become entities (so no raw HTML, autolink or entity reaches a renderer) and line breaks become
    spaces.

    Example:
        >>> escape_markdown("<img src=x onerror=alert(1)>")
        '&lt;img src=x onerror=alert(1)\\\\>'
        >>> escape_markdown("- item"), escape_markdown("2. item"), escape_markdown("12.19 MiB")
        ('\\\\- item', '2\\\\. item', '12.19 MiB')
    """
    flat = re.sub(r"[\r\n\t]+", " ", str(text))
    flat = flat.replace("&", "&amp;").replace("<", "&lt;")
    flat = _MARKDOWN_SPECIAL.sub(r"\\\1", flat)
    # Escape the marker's last character: "- " → "\\- ", "12. " → "12\\. ", "---" → "\\---".
    return _MARKDOWN_LINE_START.sub(_escape_line_start, flat)


def _escape_line_start(match: re.Match) -> str:
    indent, marker = (match.group(1), match.group(2)) if match.group(2) else (match.group(3), match.group(4))
    return indent + marker[:-1] + "\\" + marker[-1]


def escape_href(path: str) -> str:
    """Percent-encode a relative file path for a link (no scheme can survive: ``:`` is encoded).

    Example:
        >>> escape_href("../exported/model card.md")
        '../exported/model%20card.md'
        >>> escape_href("javascript:alert(1)")
        'javascript%3Aalert%281%29'
    """
    return quote(str(path), safe="/._-~")


# --------------------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin: 0 0 0.4em; }
p, li, td, figcaption { overflow-wrap: break-word; }
th { white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figure { margin: 0.8em 0; }
.notice { background: #fff6d5; border-left: 4px solid #e0b400; padding: 0.4em 0.8em; }
.lead { font-size: 1.2em; font-weight: 600; margin: 0.5em 0; }
.figures { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.6em 0; }
.tile { border: 1px solid #ccc; border-radius: 6px; padding: 0.4em 1em; min-width: 8em; max-width: 100%; }
.tile .value { font-size: 1.7em; font-weight: 600; }
.tile .label { color: #444; }
.tile .note { color: #777; font-size: 0.85em; }
.advice li { margin: 0.35em 0; }
.advice .action { display: block; color: #1a5e20; }
nav { font-size: 0.9em; color: #555; margin: 0.8em 0; }
nav a { margin-right: 0.8em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; max-height: 30em; }
figcaption { color: #555; font-size: 0.9em; }
"""

# No scripts, no external anything: images only from data: URIs, styles only from the page itself.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _data_uri(figure: Figure) -> str:
    return f"data:{figure.mime};base64,{base64.b64encode(figure.data).decode('ascii')}"


def render_html(title: str, sections: Sequence[Section], contents: bool = False) -> str:
    """Render sections as one self-contained HTML page (inline CSS, images as data: URIs, no scripts).

    Args:
        title: page title (escaped).
        sections: the page's sections.
        contents: put a line of links to the sections after the first one (the verdict).

    Returns:
        The HTML text.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape_html(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape_html(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape_html(title)}</h1>",
    ]
    for position, section in enumerate(sections):
        parts.append(f'<section id="{escape_html(section.anchor)}">')
        parts.append(f"<h2>{escape_html(section.title)}</h2>")
        for block in section.blocks:
            parts.append(_html_block(block))
        parts.append("</section>")
        if contents and position == 0 and len(sections) > 1:
            links = "".join(
                f'<a href="#{escape_html(other.anchor)}">{escape_html(other.title)}</a>'
                for other in sections[1:]
            )
            parts.append(f"<nav>{links}</nav>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _html_block(block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{escape_html(block.text)}</p>"
    if isinstance(block, Lead):
        return f'<p class="lead">{escape_html(block.text)}</p>'
    if isinstance(block, Notice):
        return f'<p class="notice">{escape_html(block.text)}</p>'
    if isinstance(block, BulletList):
        items = "".join(f"<li>{escape_html(item)}</li>" for item in block.items)
        return f"<ul>{items}</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{escape_html(cell)}</th>" for cell in block.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape_html(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
        )
        # A wide table scrolls inside its box; the page itself never scrolls sideways.
        return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    if isinstance(block, Figure):
        caption = escape_html(block.caption)
        return f'<figure><img src="{_data_uri(block)}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
    if isinstance(block, Preformatted):
        return f"<pre>{escape_html(block.text)}</pre>"
    if isinstance(block, KeyFigures):
        tiles = "".join(
            '<div class="tile">'
            f'<div class="value">{escape_html(item.value)}</div>'
            f'<div class="label">{escape_html(item.label)}</div>'
            + (f'<div class="note">{escape_html(item.note)}</div>' if item.note else "")
            + "</div>"
            for item in block.items
        )
        return f'<div class="figures">{tiles}</div>'
    if isinstance(block, Advice):
        items = "".join(
            f'<li>{escape_html(item.problem)}<span class="action">→ {escape_html(item.action)}</span></li>'
            for item in block.items
        )
        return f'<ol class="advice">{items}</ol>'
    if isinstance(block, Link):
        return f'<p><a href="{escape_html(escape_href(block.href))}">{escape_html(block.text)}</a></p>'
    raise TypeError(f"unknown report block {type(block).__name__}")


# --------------------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------------------


def render_markdown(title: str, sections: Sequence[Section]) -> tuple[str, dict[str, bytes]]:
    """Render sections as Markdown; figures become files referenced by relative name.

    Args:
        title: page title (escaped).
        sections: the document's sections.

    Returns:
        The Markdown text and a mapping file name → bytes of the figures to write beside it.
    """
    lines = [f"# {escape_markdown(title)}", ""]
    files: dict[str, bytes] = {}
    for section in sections:
        lines += [f"## {escape_markdown(section.title)}", ""]
        for block in section.blocks:
            lines += _markdown_block(block, files)
            lines.append("")
    return "\n".join(lines), files


def _markdown_block(block, files: dict[str, bytes]) -> list[str]:
    if isinstance(block, Paragraph):
        return [escape_markdown(block.text)]
    if isinstance(block, Lead):
        return [f"**{escape_markdown(block.text)}**"]
    if isinstance(block, Notice):
        return [f"> **Note:** {escape_markdown(block.text)}"]
    if isinstance(block, BulletList):
        return [f"- {escape_markdown(item)}" for item in block.items]
    if isinstance(block, Table):
        lines = ["| " + " | ".join(escape_markdown(cell) for cell in block.headers) + " |"]
        lines.append("|" + "---|" * len(block.headers))
        lines += ["| " + " | ".join(escape_markdown(cell) for cell in row) + " |" for row in block.rows]
        return lines
    if isinstance(block, Figure):
        files[block.filename] = block.data
        return [
            f"![{escape_markdown(block.caption)}]({escape_href(block.filename)})",
            "",
            f"*{escape_markdown(block.caption)}*",
        ]
    if isinstance(block, Preformatted):
        # A fence longer than any backtick run inside keeps the content literal.
        longest = max((len(run) for run in re.findall(r"`+", block.text)), default=0)
        fence = "`" * max(3, longest + 1)
        return [fence, block.text, fence]
    if isinstance(block, KeyFigures):
        return [
            f"- **{escape_markdown(item.label)}: {escape_markdown(item.value)}**"
            + (f" ({escape_markdown(item.note)})" if item.note else "")
            for item in block.items
        ]
    if isinstance(block, Advice):
        return [
            f"{number}. {escape_markdown(item.problem)} **What to do:** {escape_markdown(item.action)}"
            for number, item in enumerate(block.items, start=1)
        ]
    if isinstance(block, Link):
        return [f"[{escape_markdown(block.text)}]({escape_href(block.href)})"]
    raise TypeError(f"unknown report block {type(block).__name__}")
