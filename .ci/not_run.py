"""The last line of `make test`: every part of the suite that did not run on this machine and
what would run it, as pytest (tests/parts.py) and .ci/v2vm.py recorded them in FILE.

    python .ci/not_run.py FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    parts: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            part = json.loads(line)
            parts.setdefault(part["name"], part["needs"])
    if parts:
        listed = "; ".join(f"{name} (needs {needs})" for name, needs in parts.items())
        print(f"make test: not run: {listed}")
    else:
        print("make test: every part of the suite ran")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
