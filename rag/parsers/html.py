"""Parser for web pages (``.html``, ``.htm``), built on trafilatura.

Finding the article in a page (and leaving out navigation, scripts, related links
and footers) is trafilatura's job; this module only maps its result onto a
:class:`~rag.types.Document`. trafilatura's text output puts one paragraph per
line, so each line becomes a paragraph, and offsets point into that extracted text.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import trafilatura
from lxml import html as lxml_html
from lxml.etree import ParserError

from rag.parsers.common import (
    build_paragraphs,
    decode_bytes,
    fold_whitespace,
    line_spans,
    normalize_date,
    path_text,
    resolved,
)
from rag.types import Document

NAME = "html"
SUFFIXES = frozenset({".html", ".htm"})

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
# Never article prose. trafilatura drops them from a page that has an article, but when
# there is none its fallback extractors return the menu ("Home News Sport") as the text.
_NOT_PROSE_XPATH = "//nav | //noscript | //template | //*[@role='navigation']"
# Meta tags that carry the full publication time (trafilatura keeps only the day).
_PUBLISHED_XPATH = (
    "//meta[@property='article:published_time' or @name='article:published_time'"
    " or @itemprop='datePublished' or @name='pubdate' or @name='date']/@content"
)


def decode(data: bytes) -> str:
    """Decode a page with the charset its ``<meta>`` declares, else like any text file."""
    match = _CHARSET.search(data[:4096])
    if match is not None:
        try:
            codec = codecs.lookup(match[1].decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            codec = None
        # Pages labelled latin-1 are in practice cp1252 (browsers treat them so), and a
        # declared utf-8 that fails to decode is better handled by the fallback chain.
        if codec is not None and codec.name not in ("utf-8", "latin-1", "iso8859-1"):
            try:
                return data.decode(codec.name)
            except UnicodeDecodeError:
                pass
    return decode_bytes(data)


def _published_time(text: str) -> str | None:
    """The publication time from the page's meta tags, with its time and zone when given."""
    try:
        tree = lxml_html.fromstring(text)
    except (ParserError, ValueError):
        return None
    for value in tree.xpath(_PUBLISHED_XPATH):
        if (date := normalize_date(str(value))) is not None:
            return date
    return None


def _prose_tree(text: str) -> tuple[lxml_html.HtmlElement | None, set[str]]:
    """The page without its navigation, and the folded text of every link left in it.

    ``None`` when lxml cannot parse the text (then trafilatura gets the text itself).
    """
    try:
        tree = lxml_html.fromstring(text)
    except (ParserError, ValueError):
        return None, set()
    for element in tree.xpath(_NOT_PROSE_XPATH):
        element.drop_tree()
    links = {fold_whitespace(a.text_content()) for a in tree.iter("a")}
    return tree, links


def parse(path: Path, text: str) -> Document:
    """Extract the main article of a web page.

    Raises ValueError when the page has no article text: nothing but navigation,
    a title, or links (a menu, an index page).
    """
    tree, links = _prose_tree(text)
    result = trafilatura.bare_extraction(
        tree if tree is not None else text,
        with_metadata=True,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
    )
    body = getattr(result, "text", None) or ""
    if not body.strip():
        raise ValueError("no article text found")

    title = fold_whitespace(getattr(result, "title", None) or "")
    spans = line_spans(body)
    # trafilatura repeats the <h1> headline as the first line; it is the title, not a paragraph.
    if spans and title and fold_whitespace(body[slice(*spans[0])]).casefold() == title.casefold():
        spans = spans[1:]
    paragraphs = build_paragraphs(body, ((a, b, body[a:b]) for a, b in spans))
    if not paragraphs:
        raise ValueError("no article text found")
    # A menu outside <nav> still comes back as text: one link per line, no prose.
    if all(p.text in links for p in paragraphs):
        raise ValueError("no article text found (only links)")

    date = getattr(result, "date", None)
    return Document(
        source=resolved(path),
        path=resolved(path),
        title=title or path_text(path.stem),
        paragraphs=paragraphs,
        author=fold_whitespace(getattr(result, "author", None) or "") or None,
        publisher=fold_whitespace(getattr(result, "sitename", None) or "") or None,
        published=_published_time(text) or (normalize_date(date) if date else None),
        url=getattr(result, "url", None) or None,
        format=NAME,
    )
