"""Which one-byte (or legacy multi-byte) code page a text export that is not
UTF-8 was written in, judged on the sample only (issue 13, case 1).

charset_normalizer alone answers at random on short files: a one-row
Windows-1252 export ``Hélène`` comes back as Big5 (``H幨鋝e``), cp932 or
GB18030, all with chaos 0, and the nightly export of new contacts is often one
or two rows. So every candidate decoding is read here the way a person would
look at it, one non-ASCII character at a time, against its neighbours:

* *hard* faults, which a person would call garbage: a control character or an
  undefined byte; a word mixing scripts (``H幨鋝e``: Latin and Han); a capital
  inside a word (``HÈlËne``, ``MŸller``: Mac Roman read as Windows-1252); a
  symbol between two letters (``HÃ©lÃ¨ne``: UTF-8 read as Windows-1252); three
  accented Latin letters in a row (``Ìîñêâà``, Cyrillic read as Windows-1252);
* *soft* faults: a Latin letter that Western European languages do not use
  (``Kšln`` is Köln in Mac Roman read as Windows-1252), two for one that no
  major European language uses (``Ayþe`` is Ayşe in Turkish cp1254).

The candidates are Windows-1252 (Excel on Windows: what PRODUCT.md promises),
Mac Roman (Excel on older Macs), the other Windows code pages, and what
charset_normalizer proposes; the one with the fewest hard faults, then soft
faults, wins, earlier candidates winning ties. Latin-1 is read as Windows-1252:
they differ only on bytes 0x80-0x9F, which are control characters in Latin-1
and never appear in its text. When even the best reading has hard faults (more
than one non-ASCII character in twenty), the guess is not sure, and the caller
asks for ``--encoding`` instead of sending it. ``codec_name`` gives a codec
the name people know it by (Windows-1252, Mac Roman), for messages.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Guess", "codec_name", "guess_legacy"]

# Tried first, in this order (earlier wins a tie): Western Europe and the
# Windows code pages of the other European scripts. Then charset_normalizer's.
_FIRST = ("cp1252", "mac-roman", "cp1250", "cp1251", "cp1253", "cp1254", "cp1257")
# charset_normalizer's names for what Windows-1252 reads the same (or better).
_CP1252_LIKE = frozenset({"ascii", "latin-1", "iso8859-1", "iso8859-15", "cp1252"})

# Accented letters of the Western European languages (French, German, Spanish,
# Portuguese, Italian, Dutch, the Scandinavian languages, Catalan): no fault.
_WESTERN = frozenset("àâäáãåæçèéêëìíîïñòóôõöøùúûüýÿßœ" "ÀÂÄÁÃÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝŸŒ" "µªº")
# Letters of the other European Latin alphabets (Central European, Baltic,
# Romanian, Turkish): one soft fault; any other letter (ð, þ, ƒ, ...): two.
_EUROPEAN = frozenset(
    "šžčřďťňěůłąęśźżćńőűășțşğıėįūųļķņģēīā" "ŠŽČŘĎŤŇĚŮŁĄĘŚŹŻĆŃŐŰĂȘȚŞĞİĖĮŪŲĻĶŅĢĒĪĀ"
)
# Punctuation that does sit between two letters in real text.
_IN_WORD = frozenset("’'·‐‑-.")  # noqa: RUF001 - the typographic apostrophe is the point
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_ESCAPED = re.compile("[\udc00-\udcff]")
_HARD = -1
HARD_SHARE = 20  # sure while hard faults are at most 1 in this many non-ASCII characters


@dataclass(frozen=True, slots=True)
class Guess:
    """The chosen codec (a ``codecs.lookup`` name), whether the reading is
    clean enough to trust, and a word that shows the fault when it is not."""

    codec: str
    sure: bool
    example: str = ""


@dataclass(frozen=True, slots=True)
class _Score:
    hard: int
    soft: int
    chars: int  # non-ASCII characters read
    example: str  # the word around the first hard fault


def guess_legacy(sample: bytes, *, complete: bool) -> Guess:
    """The code page of ``sample`` (bytes that are not UTF-8 and have no BOM).

    ``complete``: the sample is the whole file; otherwise its cut last line is
    not judged. Imports charset_normalizer only for samples that Windows-1252
    and Mac Roman do not read cleanly.
    """
    if not complete:
        cut = max(sample.rfind(b"\n"), sample.rfind(b"\r"))
        sample = sample[: cut + 1] if cut > 0 else sample
    # Excel for Mac's "CSV (Macintosh)" ends lines with CR alone: there, Mac
    # Roman wins a tie with Windows-1252.
    first = _FIRST
    if b"\r" in sample and b"\n" not in sample:
        first = ("mac-roman", "cp1252", *_FIRST[2:])
    scored: list[tuple[tuple[int, int, int], str, _Score]] = []
    for order, codec in enumerate(first):
        score = _score(sample, codec)
        scored.append(((score.hard, score.soft, order), codec, score))
        if order == 1 and min(scored)[0][:2] == (0, 0):
            break  # Windows-1252 or Mac Roman reads it cleanly: the usual case
    else:
        for codec in _proposed(sample):
            if all(codec != known for _, known, _ in scored):
                score = _score(sample, codec)
                scored.append(((score.hard, score.soft, len(scored)), codec, score))
    _, codec, best = min(scored)
    sure = best.hard == 0 or best.hard * HARD_SHARE <= best.chars
    return Guess(codec, sure, "" if sure else best.example)


def _proposed(sample: bytes) -> list[str]:
    from charset_normalizer import from_bytes

    found: list[str] = []
    for match in from_bytes(sample):
        try:
            name = codecs.lookup(match.encoding).name
        except LookupError:
            continue
        name = "cp1252" if name in _CP1252_LIKE else name
        if name not in found and not name.startswith(("utf-16", "utf-32")):
            found.append(name)
    return found


def _score(sample: bytes, codec: str) -> _Score:
    try:
        text = sample.decode(codec, "surrogateescape")
    except (UnicodeError, LookupError):
        return _Score(1 << 30, 0, 1, "")
    hard = soft = chars = 0
    example = ""
    last = len(text) - 1
    for match in _NON_ASCII.finditer(text):
        i = match.start()
        chars += 1
        before = text[i - 1] if i > 0 else " "
        after = text[i + 1] if i < last else " "
        fault = _fault(match.group(), before, after)
        if fault == _HARD:
            hard += 1
            if not example:
                example = _word_at(text, i)
        else:
            soft += fault
    return _Score(hard, soft, chars, example)


def _fault(char: str, before: str, after: str) -> int:
    """_HARD, or the weight of a soft fault (0: none); see the module docstring."""
    if _ESCAPED.match(char):
        return _HARD
    category = unicodedata.category(char)
    if category[0] == "C":  # control, undefined, private use
        return _HARD
    if category[0] != "L" or category == "Lm":
        if category[0] == "M" or char in _IN_WORD:
            return 0
        if before.isalpha() and after.isalpha():
            return _HARD
        # A sign stuck to a word ("…lodie", "∆gir") or an opening quote after
        # one ("Zo" + U+2018): possible, but the rarer reading of a tie.
        if category[0] == "S" and (before.isalpha() or after.isalpha()):
            return 1
        if char in "§¶…" and after.isalpha() and not before.isalpha():
            return 1
        return 1 if category in ("Pi", "Ps") and before.isalpha() else 0
    script = _script(char)
    for neighbour in (before, after):
        if neighbour.isalpha() and _script(neighbour) != script:
            return _HARD
    if char.isupper() and before.isalpha() and (before.islower() or after.islower()):
        return _HARD  # "HÈlËne", "MŸller": a capital inside a word
    if script == "LATIN":
        if not before.isascii() and not after.isascii() and before.isalpha() and after.isalpha():
            return _HARD
        if char not in _WESTERN:
            return 1 if char in _EUROPEAN else 2
    return 0


def _script(char: str) -> str:
    point = ord(char)
    if point < 0x250 or 0x1E00 <= point < 0x1F00:  # Latin blocks (with µ, ª, º)
        return "LATIN"
    name = unicodedata.name(char, "")
    script = name.split(" ", 1)[0]
    # Japanese text mixes kana and kanji in one word; so does Korean with hanja.
    return "CJK" if script in ("HIRAGANA", "KATAKANA", "HANGUL", "CJK") else script


def _word_at(text: str, index: int) -> str:
    start = index
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in ",;\t|\"":
        start -= 1
    end = index
    while end < len(text) - 1 and not text[end + 1].isspace() and text[end + 1] not in ",;\t|\"":
        end += 1
    return _ESCAPED.sub("\ufffd", text[start : end + 1])[:40]


def codec_name(codec: str) -> str:
    """A codec's name as people know it: UTF-8, Windows-1252, Mac Roman, ..."""
    if re.fullmatch(r"cp125[0-8]", codec):
        return f"Windows-{codec[2:]}"
    names = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "mac-roman": "Mac Roman",
             "utf-16": "UTF-16", "utf-32": "UTF-32", "iso8859-1": "Latin-1"}
    return names.get(codec, codec)
