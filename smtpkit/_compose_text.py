"""Template text for compose: ``{field}`` parsing and the plain-text version of an HTML body.

A template string is parsed once into *pieces*: literal strings and :class:`Field` references.
The syntax is ``str.format``'s, restricted: ``{name}`` or ``{name:spec}``; ``{{`` and ``}}`` are
literal braces; attribute access (``{a.b}``), indexing (``{a[0]}``), conversions (``{a!r}``) and
nested fields are refused, so a template can never reach into the objects of a row.

``html_to_text`` turns the pieces of an HTML template into the pieces of a readable plain-text
template (paragraphs, line breaks, list bullets, link targets, ``alt`` text) *before* any row is
seen: fields travel through the conversion as noncharacter sentinels, so the text part
of every message is filled as fast as the HTML part.

Example:
    >>> pieces = parse_template("<p>Hi <b>{first_name}</b>,</p><p>bye</p>", where="html")
    >>> to_source(html_to_text(pieces))
    'Hi {first_name},\\n\\nbye\\n'
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser

from .errors import TemplateError

__all__ = ["Field", "Piece", "html_to_text", "parse_template", "to_source"]


@dataclasses.dataclass(frozen=True)
class Field:
    """One ``{name}`` or ``{name:spec}`` reference in a template."""

    name: str
    spec: str = ""

    @property
    def source(self) -> str:
        """The field as written in a template."""
        return "{" + self.name + (":" + self.spec if self.spec else "") + "}"


Piece = str | Field

_FORMATTER = string.Formatter()
_BAD_NAME_CHARS = set(".[]!{}")


def _line_of(source: str, fragment: str) -> str:
    position = source.find(fragment)
    if position < 0:
        return ""
    return f" (line {source.count(chr(10), 0, position) + 1})"


def parse_template(source: str, /, *, where: str) -> tuple[Piece, ...]:
    """Split a template into literal strings and fields; ``TemplateError`` on bad syntax.

    ``where`` names the template in error messages (``"subject"``, ``"html"``, ...).

    Example:
        >>> parse_template("Hi {first_name}, {{literal}}", where="subject")
        ('Hi ', Field(name='first_name', spec=''), ', {literal}')
    """
    if not isinstance(source, str):
        raise TemplateError(f"The {where} template must be a string, not {type(source).__name__}.")
    hint = (
        "write {{ and }} for literal braces (CSS in a <style> block needs them too), "
        "and {column_name} for a field"
    )
    try:
        parsed = list(_FORMATTER.parse(source))
    except ValueError as exc:
        raise TemplateError(
            f"The {where} template has unbalanced braces ({exc}); {hint}."
        ) from None
    pieces: list[Piece] = []
    for literal, name, spec, conversion in parsed:
        if literal:
            pieces.append(literal)
        if name is None:
            continue
        written = (
            "{"
            + name
            + ("!" + conversion if conversion else "")
            + (":" + spec if spec else "")
            + "}"
        )
        where_line = f"The {where} template{_line_of(source, written)}"
        if not name or name != name.strip() or _BAD_NAME_CHARS & set(name):
            raise TemplateError(
                f"{where_line} has {written!r}, which is not a field; {hint}. Fields are column "
                "names without spaces at their ends, dots or brackets."
            )
        if conversion:
            raise TemplateError(
                f"{where_line} uses the conversion {written!r}; write {{{name}}} (values are "
                "always inserted as text)."
            )
        if spec and ("{" in spec or "}" in spec):
            raise TemplateError(
                f"{where_line} nests a field in a format spec: {written!r}; {hint}."
            )
        pieces.append(Field(name, spec or ""))
    return tuple(_merge_literals(pieces))


def _merge_literals(pieces: Iterable[Piece]) -> list[Piece]:
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        elif not (isinstance(piece, str) and not piece):
            merged.append(piece)
    return merged


def to_source(pieces: Iterable[Piece], /) -> str:
    """Write pieces back as a template string (literal braces doubled)."""
    return "".join(
        p.source if isinstance(p, Field) else p.replace("{", "{{").replace("}", "}}")
        for p in pieces
    )


# --- HTML to plain text ---------------------------------------------------------------------

# Fields cross the HTML parser as U+FDD0 <index> U+FDD1: Unicode noncharacters, never part of
# interchanged text, with no HTML meaning, not whitespace, untouched by entity decoding.
_OPEN, _CLOSE, _PRE = "\ufdd0", "\ufdd1", "\ufdd2"
_SENTINEL = re.compile("\ufdd0(\\d+)\ufdd1")
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
_PARAGRAPH = frozenset(
    {
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "ul",
        "ol",
        "dl",
        "blockquote",
        "pre",
        "figure",
        "form",
    }
)
_LINE = frozenset(
    {
        "div",
        "tr",
        "li",
        "dt",
        "dd",
        "section",
        "article",
        "header",
        "footer",
        "main",
        "nav",
        "aside",
        "address",
        "center",
        "figcaption",
        "body",
        "html",
        "tbody",
        "thead",
        "tfoot",
    }
)
_CELL = frozenset({"td", "th"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._pending = 0  # line breaks owed before the next text: 1 = new line, 2 = blank line
        self._skip = 0
        self._pre = 0
        self._lists: list[list[int]] = []  # per open list: [next number] for <ol>, [] for <ul>
        self._links: list[tuple[str | None, int]] = []  # (href, len(out) at <a>)
        self._cells = 0

    def _break(self, lines: int) -> None:
        self._pending = max(self._pending, lines)

    def _emit(self, text: str) -> None:
        if self._pending:
            if self.out:
                self.out.append("\n" * self._pending)
            self._pending = 0
        self.out.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
            return
        if self._skip:
            return
        attributes = dict(attrs)
        if tag == "br":
            self._emit("\n")
        elif tag == "hr":
            self._break(2)
            self._emit("----")
            self._break(2)
        elif tag == "img":
            alt = (attributes.get("alt") or "").strip()
            if alt:
                self._emit(alt)
        elif tag == "a":
            self._links.append((attributes.get("href"), len(self.out)))
        elif tag in ("ul", "ol"):
            self._break(1 if self._lists else 2)
            self._lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            self._break(1)
            counter = self._lists[-1] if self._lists else []
            indent = "  " * max(len(self._lists) - 1, 0)
            if counter:
                self._emit(f"{_PRE}{indent}{counter[0]}. ")
                counter[0] += 1
            else:
                self._emit(f"{_PRE}{indent}- ")
        elif tag in _CELL:
            if self._cells:
                self._emit("  ")
            self._cells += 1
        elif tag == "tr":
            self._cells = 0
            self._break(1)
        elif tag in _PARAGRAPH:
            self._break(2)
            if tag == "pre":
                self._pre += 1
        elif tag in _LINE:
            self._break(1)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(self._skip - 1, 0)
            return
        if self._skip:
            return
        if tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.out[start:]).strip()
            if href:
                href = href.strip()
                shown = href[7:] if href.lower().startswith("mailto:") else href
                if shown and not href.startswith("#") and shown != label:
                    self._emit(f" ({shown})" if label else shown)
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._break(1 if self._lists else 2)
        elif tag in _PARAGRAPH:
            if tag == "pre":
                self._pre = max(self._pre - 1, 0)
            self._break(2)
        elif tag in _LINE or tag == "li":
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            # keep the layout of <pre>; mark its lines so the final clean-up leaves them alone
            self._emit(_PRE + data.replace("\r\n", "\n").replace("\n", "\n" + _PRE))
            return
        text = _HTML_SPACE.sub(" ", data.replace("\xa0", " "))
        if text.strip(" ") or not self._pending:  # spaces between blocks mean nothing
            self._emit(text)


def _tidy(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        if line.startswith(_PRE):
            lines.append(line.replace(_PRE, "").rstrip(" "))
        else:
            lines.append(line.replace(_PRE, "").strip(" "))
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return tidy + "\n" if tidy else ""


def html_to_text(pieces: Sequence[Piece], /) -> tuple[Piece, ...]:
    """The plain-text template of an HTML template (fields kept as fields).

    Example:
        >>> html = parse_template('<a href="https://x.test/?id={id}">Open</a>', where="html")
        >>> to_source(html_to_text(html))
        'Open (https://x.test/?id={id})\\n'
    """
    fields = [p for p in pieces if isinstance(p, Field)]
    marked: list[str] = []
    index = 0
    for piece in pieces:
        if isinstance(piece, Field):
            marked.append(f"{_OPEN}{index}{_CLOSE}")
            index += 1
        else:  # a stray sentinel in the template itself must not pose as a field
            marked.append(piece.translate({ord(c): None for c in (_OPEN, _CLOSE, _PRE)}))
    extractor = _TextExtractor()
    extractor.feed("".join(marked))
    extractor.close()
    text = _tidy("".join(extractor.out))
    result: list[Piece] = []
    position = 0
    for match in _SENTINEL.finditer(text):
        result.append(text[position : match.start()])
        result.append(fields[int(match.group(1))])
        position = match.end()
    result.append(text[position:])
    return tuple(_merge_literals(result))
