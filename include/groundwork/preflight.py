"""Cheap checks before a file reaches unstructured, so bad input fails clearly and safely.

* PDF: opened with pypdf first; an encrypted file (that an empty password does
  not open) or an unreadable one is rejected with that reason, instead of
  coming out of the partitioner as "no text".
* Zip-based formats (DOCX, PPTX, XLSX, EPUB, ODT): must be zip archives, and
  their expanded size must stay under the source's limit (zip bombs).
* HTML: nesting deeper than the parser's limit is reported; the parser would
  silently drop everything below it.
* Text: decoded by groundwork itself (UTF-8, UTF-16/32 by BOM or byte pattern,
  then the source's fallback encoding) rather than by a guess on a sample, and
  streamed in blocks.

Each check raises :class:`~groundwork.errors.DocumentError`; none of them
parses more than it must.
"""

from __future__ import annotations

import codecs
import logging
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from groundwork.errors import DocumentError

__all__ = ["HTML_DEPTH_LIMIT", "ZIP_SUFFIXES", "check_file", "decode_text", "detect_encoding", "iter_text"]

ZIP_SUFFIXES = {".docx", ".pptx", ".xlsx", ".epub", ".odt"}
HTML_DEPTH_LIMIT = 255  # libxml2's default maximum depth (lxml without huge_tree)
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
# Elements whose end tag HTML lets authors omit (``<p>a<p>b``, ``<li>x<li>y``, ``<td>1<td>2``): a new
# element of the same group closes the open one, unless a scope boundary lies between them.
_IMPLIED_END: dict[str, tuple[set[str], set[str]]] = {
    "li": ({"li"}, {"ul", "ol", "menu"}),
    "dt": ({"dt", "dd"}, {"dl"}),
    "dd": ({"dt", "dd"}, {"dl"}),
    "tr": ({"tr"}, {"table", "thead", "tbody", "tfoot"}),
    "td": ({"td", "th"}, {"tr", "table"}),
    "th": ({"td", "th"}, {"tr", "table"}),
    "thead": ({"thead", "tbody", "tfoot"}, {"table"}),
    "tbody": ({"thead", "tbody", "tfoot"}, {"table"}),
    "tfoot": ({"thead", "tbody", "tfoot"}, {"table"}),
    "option": ({"option"}, {"select", "datalist", "optgroup"}),
    "optgroup": ({"optgroup", "option"}, {"select"}),
}
# Block elements whose start closes an open <p>.
_CLOSES_P = {
    "address", "article", "aside", "blockquote", "details", "dialog", "div", "dl", "fieldset", "figcaption",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "main", "menu",
    "nav", "ol", "p", "pre", "section", "table", "ul",
}  # fmt: skip
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]


def check_file(path: Path, max_uncompressed_bytes: int) -> None:
    """Raise DocumentError if ``path`` is one of the known kinds of bad input."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        _check_pdf(path)
    elif suffix in ZIP_SUFFIXES:
        _check_zip(path, max_uncompressed_bytes)
    elif suffix in (".html", ".htm"):
        _check_html_depth(path)


def _check_pdf(path: Path) -> None:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(str(path), "the PDF is encrypted and needs a password", "EncryptedDocument")
        if len(reader.pages) == 0:
            raise DocumentError(str(path), "the PDF has no pages", "CorruptDocument")
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, OSError, TypeError) as exc:
        raise DocumentError(str(path), f"not a readable PDF: {exc}", "CorruptDocument") from None


def _check_zip(path: Path, limit: int) -> None:
    kind = path.suffix.lower().lstrip(".").upper()
    if not zipfile.is_zipfile(path):
        raise DocumentError(str(path), f"not a valid {kind} file (it is not a zip archive)", "CorruptDocument")
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise DocumentError(str(path), f"not a valid {kind} file: {exc}", "CorruptDocument") from None
    if expanded > limit:
        raise DocumentError(
            str(path),
            f"expands to {expanded} bytes, over the limit of {limit} (max_uncompressed_mb); a zip bomb?",
            "ArchiveTooLarge",
        )


class _DepthScanner(HTMLParser):
    """Tracks the open elements as a browser (or lxml) would: omitted end tags are implied."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.max_depth = 0

    def _close_back_to(self, names: set[str], boundary: set[str]) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] in boundary:
                return
            if self.stack[i] in names:
                del self.stack[i:]
                return

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in _VOID:
            return
        if tag in _CLOSES_P:
            self._close_back_to({"p"}, {"div", "td", "th", "li", "table", "button", "body"})
        if tag in _IMPLIED_END:
            self._close_back_to(*_IMPLIED_END[tag])
        self.stack.append(tag)
        self.max_depth = max(self.max_depth, len(self.stack))

    def handle_endtag(self, tag: str) -> None:
        # Closes the nearest open element of that name and everything left open inside it;
        # a stray end tag closes nothing.
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] == tag:
                del self.stack[i:]
                return


def _check_html_depth(path: Path) -> None:
    scanner = _DepthScanner()
    with path.open(encoding="utf-8", errors="replace") as fh:
        while block := fh.read(1 << 16):
            scanner.feed(block)
            if scanner.max_depth > HTML_DEPTH_LIMIT:
                raise DocumentError(
                    str(path),
                    f"HTML nested deeper than {HTML_DEPTH_LIMIT} elements; the parser would drop the content below",
                    "TooDeeplyNested",
                )


def detect_encoding(path: Path, fallback: str = "cp1252", forced: str | None = None) -> str:
    """Encoding of a text file: forced, BOM, UTF-8 (checked over the whole file, streamed),
    UTF-16 without BOM (NUL pattern), then ``fallback``."""
    if forced:
        return forced
    with path.open("rb") as fh:
        head = fh.read(4096)
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                return encoding
        if len(head) >= 4 and head.count(0) > len(head) // 4:
            # Mostly-ASCII UTF-16 without a BOM: every other byte is NUL.
            return "utf-16-be" if head[0::2].count(0) > head[1::2].count(0) else "utf-16-le"
        decoder = codecs.getincrementaldecoder("utf-8")()
        block = head
        try:
            while block:
                decoder.decode(block)
                block = fh.read(1 << 20)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
    try:
        codecs.lookup(fallback)
    except LookupError:
        return "latin-1"
    return fallback


def iter_text(path: Path, encoding: str, block_bytes: int = 1 << 20) -> Iterator[str]:
    """The decoded text of ``path`` in blocks (undecodable bytes replaced), never all at once."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    with path.open("rb") as fh:
        while block := fh.read(block_bytes):
            if text := decoder.decode(block):
                yield text
        if tail := decoder.decode(b"", final=True):
            yield tail


def decode_text(data: bytes, fallback: str = "cp1252", forced: str | None = None) -> str:
    """Decode a small byte string with the rules of :func:`detect_encoding` (for tests and rows)."""
    import tempfile

    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        encoding = detect_encoding(Path(tmp.name), fallback, forced)
    return data.decode(encoding, errors="replace")
