"""Shared rich consoles: results go to stdout, messages and progress to stderr.

Everything this tool prints carries text it does not control: class names and file names from the user's data,
paths, messages built from them. rich would read ``[red]`` or ``[/]`` in such text as markup (a class named ``[/]``
crashed the printer, ``[red]b.xml`` printed as ``b.xml``) and ``:smile:`` as an emoji code, so both consoles print
every string literally: markup, emoji codes and highlighting are off for everything they print, tables included.
Styles are given as objects instead (:func:`styled`, ``style=`` arguments), never by markup inside a string.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

console = Console(markup=False, emoji=False, highlight=False)
err_console = Console(stderr=True, markup=False, emoji=False, highlight=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Join text pieces into one rich ``Text``, each piece literal; a ``(text, style)`` pair is styled.

    Args:
        parts: plain strings, or ``(text, style)`` pairs such as ``("error:", "bold red")``.

    Returns:
        A :class:`rich.text.Text` to print or to put in a table cell.

    Example:
        >>> styled(("warning:", "yellow"), " class [/] is rare").plain
        'warning: class [/] is rare'
    """
    return Text.assemble(*parts)
