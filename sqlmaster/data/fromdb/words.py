"""Table and column names as the words a question uses: ``singer_in_concert`` → "singers in concerts",
``Song_release_year`` → "song release year", ``HomeTown`` → "home town".

Names are split at underscores, spaces, dashes, digits and lower→upper case changes; the pieces are lowercased
(an all-caps piece of two or more letters in a mixed-case name, an acronym like ``GDP`` in ``GDP_per_capita``,
keeps its case) and each noun of a
table name is made plural for "how many singers". Nothing here reads the database; it is pure text.
"""

from __future__ import annotations

import re

_PARTS = re.compile(r"[^\W_]+")  # runs of letters and digits (any script)
_JOINERS = {"in", "of", "and", "to", "for", "by", "on", "at", "with", "per"}
_IRREGULAR = {"person": "people", "child": "children", "man": "men", "woman": "women", "staff": "staff"}
_UNCOUNTED = ("s", "info", "data", "information", "equipment", "news", "people", "children", "men")


def _split_case(part: str) -> list[str]:
    """``HomeTown`` → Home, Town; ``GDPGrowth`` → GDP, Growth; ``km2`` → km, 2."""
    pieces: list[str] = []
    start = 0
    for i in range(1, len(part)):
        a, b = part[i - 1], part[i]
        nxt = part[i + 1] if i + 1 < len(part) else ""
        lower_upper = a.islower() and b.isupper()
        acronym_end = a.isupper() and b.isupper() and nxt.islower()
        if lower_upper or acronym_end or a.isdigit() != b.isdigit():
            pieces.append(part[start:i])
            start = i
    pieces.append(part[start:])
    return pieces


def words(name: str) -> list[str]:
    """The pieces of an identifier, lowercased except acronyms."""
    pieces = [p for part in _PARTS.findall(name) for p in _split_case(part)]
    if not pieces:
        return [name.strip() or name]
    if name.upper() == name:  # an all-caps name (VOTES, AREA_CODE_STATE) is shouting, not acronyms
        return [p.lower() for p in pieces]
    return [p if (len(p) > 1 and p.isupper() and p.isalpha()) else p.lower() for p in pieces]


def column_phrase(name: str) -> str:
    """A column as words: ``Song_release_year`` → "song release year"."""
    return " ".join(words(name))


def plural(noun: str) -> str:
    lowered = noun.lower()
    if lowered in _IRREGULAR:
        return _IRREGULAR[lowered]
    if not noun.isalpha() or lowered.endswith(_UNCOUNTED):
        return noun
    if re.search(r"[^aeiou]y$", lowered):
        return noun[:-1] + "ies"
    if lowered.endswith(("ch", "sh", "x", "z")):
        return noun + "es"
    return noun + "s"


def table_phrase(name: str, many: bool = True) -> str:
    """A table as words, plural by default: ``singer_in_concert`` → "singers in concerts"."""
    pieces = words(name)
    if not many:
        return " ".join(pieces)
    out = []
    for index, piece in enumerate(pieces):
        last_of_noun = index + 1 == len(pieces) or pieces[index + 1].lower() in _JOINERS
        out.append(plural(piece) if last_of_noun and piece.lower() not in _JOINERS else piece)
    return " ".join(out)


def value_text(value: object) -> str:
    """A value as the question shows it: as it appears in the database (numbers without a trailing .0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
