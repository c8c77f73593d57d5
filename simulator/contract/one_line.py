"""Text shown on one line (lists, pages, logs, exports) and sent in OCPP fields: a name, an
address, a vendor. A line break or a control character there is a mistake, or an attack on
a log, and a workbook cannot hold a control character at all (an XLSX export of the fleet
was refused for one). Any other character is taken: a non-breaking space pasted from a
web page is a space (`str.isprintable`, used before, refused it as "not printable")."""

from __future__ import annotations

import unicodedata

# Controls (C0, DEL, C1: \n, \r, ESC, NUL ...), and the line and paragraph separators.
_BREAKING = frozenset({"Cc", "Zl", "Zp"})


def is_one_line(text: str) -> bool:
    return not any(unicodedata.category(c) in _BREAKING for c in text)
