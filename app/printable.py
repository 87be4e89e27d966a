"""Text from processes made safe to print on a terminal.

A process chooses its own argv, cwd and executable name, so any of them may carry terminal
escape sequences (`ESC ] 0 ; title BEL` retitles the window, `ESC [ 2 J` clears it, others
reprogram keys on some terminals) or characters that reorder or hide what follows (U+202E).
Every human output passes such text through `printable()`, which writes each of those
characters as a visible Python-style escape (`\\x1b`, `\\u202e`); JSON and CSV keep the data
itself, escaped as their own formats require.
"""

from __future__ import annotations

import re

# C0 controls (tab and newline included: one row, one line), DEL, C1 controls (U+009B is a
# CSI on terminals that take 8-bit controls), the line and paragraph separators, the bidi
# embeddings, overrides and isolates, and lone surrogates (undecodable bytes).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control, bidi and separator character written as a visible escape."""
    return _UNSAFE.sub(_escape, text)
