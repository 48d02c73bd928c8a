"""Untrusted text for a terminal: shown literally, never read as Rich markup or escape codes.

Person ids, attributes, webhook subjects, error details and query results come from outside.
Printed as ``str`` through Rich they are parsed as markup (``cli[/oops]`` aborts the command
with ``MarkupError``; ``[link=https://evil.example]click me[/link]`` becomes a hidden
hyperlink), and raw ESC, CSI or OSC sequences reach the terminal (recolouring, clearing or
retitling it, faking rows). ``plain_text`` turns such text into a Rich ``Text``, which is never
parsed as markup, with every character Python would not print (``str.isprintable``: controls,
C1 controls such as the 8-bit CSI, bidi overrides and other invisible formatting, surrogates,
line separators) replaced by its escape, ``\\x1b`` or ``\\u202e``, shown in reverse video so
it stands apart from literal text.

A backslash is left as it is: the aim is to neutralise the text, not to round-trip it, and
``C:\\data`` should read as written. Text we write ourselves (titles, labels) keeps Rich markup.
"""

from __future__ import annotations

from rich.text import Text

__all__ = ["ESCAPE_STYLE", "plain_text"]

ESCAPE_STYLE = "reverse"


def plain_text(value: object, *, multiline: bool = False) -> Text:
    """``value`` (``str()`` of it if not text) as a ``Text`` safe to print; see the module doc.

    With ``multiline`` a newline stays a line break (a JSON payload, an error body); otherwise
    it is escaped too, so one table cell cannot pose as several rows.

    >>> plain_text("cli[/oops]\\x1b[2J").plain
    'cli[/oops]\\\\x1b[2J'
    """
    text = value if isinstance(value, str) else str(value)
    result = Text()
    lines = text.split("\n") if multiline else (text,)
    for number, line in enumerate(lines):
        if number:
            result.append("\n")
        _append_visible(result, line)
    return result


def _append_visible(result: Text, line: str) -> None:
    if line.isprintable():  # the usual case: one C-level scan
        result.append(line)
        return
    start = 0
    for index, char in enumerate(line):
        if not char.isprintable():
            result.append(line[start:index])
            result.append(_escape(char), style=ESCAPE_STYLE)
            start = index + 1
    result.append(line[start:])


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
