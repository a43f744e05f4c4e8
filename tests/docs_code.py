"""The code the docs show, kept equal to the examples it comes from (used by the docs' tests and `dev.py docs`).

A Python block of `docs/*.md` holds the code itself, so that the page reads anywhere (a code host, an editor), and
the line before its opening fence names where the code comes from, a file under `examples/` or one section of it:

    <!-- example: examples/operations.py:fix -->
    ```python
    entry = await fl.fix(...)
    ```

A section is marked in the file by `# --8<-- [start:fix]` and `# --8<-- [end:fix]`; it is shown dedented, and the
marker lines of a whole file are left out. `python3 dev.py docs` rewrites every such block from its example.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

__all__ = ["SOURCE", "expected_code", "sync_page"]

ROOT = Path(__file__).resolve().parents[1]
SOURCE = re.compile(r"^<!-- example: (?P<path>[^\s:]+)(?::(?P<section>[a-z][-_0-9a-z]*))? -->$")
_MARKER = re.compile(r"^\s*#\s*--8<--\s*\[(start|end):[a-z][-_0-9a-z]*\]\s*$")


def expected_code(path: str, section: str | None) -> list[str] | None:
    """The lines a block showing `path` (or its `section`) must hold; None when there is no such file or section."""
    file = ROOT / path
    if not file.is_file():
        return None
    lines = file.read_text(encoding="utf-8").splitlines()
    if section is not None:
        starts = [i for i, line in enumerate(lines) if re.search(rf"--8<--\s*\[start:{re.escape(section)}\]", line)]
        ends = [i for i, line in enumerate(lines) if re.search(rf"--8<--\s*\[end:{re.escape(section)}\]", line)]
        if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
            return None
        lines = textwrap.dedent("\n".join(lines[starts[0] + 1 : ends[0]])).splitlines()
    return [line for line in lines if not _MARKER.match(line)]


def sync_page(page: Path) -> bool:
    """Rewrite every block of `page` that names its example with that example's code (and a block that is still a
    snippets include line); return whether the page changed."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        include = (
            re.match(r"^```python\s*$", line)
            and i + 2 < len(lines)
            and re.match(r'^--8<-- "(?P<path>[^":]+)(?::(?P<section>[a-z][-_0-9a-z]*))?"$', lines[i + 1])
        )
        source = SOURCE.match(line)
        if include and lines[i + 2].startswith("```"):
            path, section = include["path"], include["section"]
            code = expected_code(path, section)
            if code is None:
                raise ValueError(f"{page.name}:{i + 2}: no example {path}:{section}")
            out += [f"<!-- example: {path}{':' + section if section else ''} -->", "```python", *code, "```"]
            i += 3
            continue
        if source and i + 1 < len(lines) and lines[i + 1].startswith("```python"):
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            code = expected_code(source["path"], source["section"])
            if code is None:
                raise ValueError(f"{page.name}:{i + 1}: no example {source['path']}:{source['section']}")
            out += [line, lines[i + 1], *code, lines[end]]
            i = end + 1
            continue
        out.append(line)
        i += 1
    text = "\n".join(out) + "\n"
    if text == page.read_text(encoding="utf-8"):
        return False
    page.write_text(text, encoding="utf-8")
    return True
