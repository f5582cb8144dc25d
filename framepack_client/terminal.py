"""Text from a server, made safe to print on a terminal.

Node ids, class names and exception messages come from whatever answers at the server address. Printed raw, an
escape sequence in them could move the cursor, rewrite earlier lines, retitle the window or (on some terminals)
write files. Every control character is shown as a visible escape instead; line breaks and tabs are kept where a
multi-line text is printed, and shown as escapes in one-line fields.
"""

from __future__ import annotations

import unicodedata


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every control or format character (C0, DEL, C1, bidi overrides, ...) written as ``\\xNN`` /
    ``\\uNNNN``. With ``keep_newlines``, \\n and \\t stay as they are."""
    out = []
    for char in str(text):
        if keep_newlines and char in "\n\t":
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)
