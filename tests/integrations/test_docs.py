"""Every Python example in the documentation is a file under `examples/` that a test runs, shown in the page itself.

A ```python block in `docs/*.md` holds the code (so that the page reads anywhere: a code host, an editor), and the
line before its opening fence names the file under `examples/` it comes from, or one section of it:
`<!-- example: examples/operations.py:fix -->`, the section being marked in the file by `# --8<-- [start:fix]` and
`# --8<-- [end:fix]`. The block must equal that code (a section dedented); `python3 dev.py docs` rewrites the blocks
from their examples. Code without a source, or that differs from it, fails.

An example counts as run by a test when:

- `examples/NAME.py`: a test module under `tests/` (this one aside) names it, as `NAME.py` or as `NAME:` (the
  `module:attribute` form uvicorn and `--app` take);
- `examples/PACKAGE/...`: a script of `examples/` that counts as run imports `PACKAGE`, or names it in a string
  (`changes=["PACKAGE"]`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs_code import SOURCE, expected_code

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
TESTS = ROOT / "tests"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
PYTHON = {"python", "py", "python3", "pycon"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    body: list[str]
    before: str = ""
    """The line before the opening fence: where the code comes from, for a Python block."""

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with the line their opening fence is on."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    opening: tuple[int, str, str] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if opening is None:
            if match:
                language = match["info"].strip().split(" ")[0].strip("{}.").lower()
                opening, body = (number, match["fence"], language), []
            continue
        start, fence, language = opening
        if match and match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence) and not match["info"]:
            blocks.append(Block(page.name, start, language, body, lines[start - 2] if start > 1 else ""))
            opening = None
        else:
            body.append(line)
    assert opening is None, f"docs/{page.name}:{opening[0]}: code block never closed"
    return blocks


def python_blocks() -> list[Block]:
    return [b for page in sorted(DOCS.glob("*.md")) for b in code_blocks(page) if b.language in PYTHON]


def problem_with(block: Block) -> str | None:
    """Why `block` is not the code of an example file or section that it names; `None` when it is."""
    source = SOURCE.match(block.before)
    if source is None:
        return (
            "must be code from examples/, named on the line before it: `<!-- example: examples/FILE.py[:SECTION] -->`"
        )
    path, section = source["path"], source["section"]
    if not path.startswith("examples/"):
        return f"shows {path}, which is not under examples/"
    code = expected_code(path, section)
    if code is None:
        return f"shows {path}{':' + section if section else ''}, which does not exist"
    if block.body != code:
        return f"differs from {path}{':' + section if section else ''}: run `python3 dev.py docs`"
    return None


def included_files() -> dict[str, list[str]]:
    """Every example file the docs show, with where."""
    found: dict[str, list[str]] = {}
    for block in python_blocks():
        if source := SOURCE.match(block.before):
            found.setdefault(source["path"], []).append(block.where)
    return found


def sources_of_tests() -> str:
    return "\n".join(
        path.read_text(encoding="utf-8") for path in sorted(TESTS.rglob("*.py")) if path != Path(__file__).resolve()
    )


def scripts_run_by_tests() -> set[str]:
    tests = sources_of_tests()
    return {
        script.stem for script in EXAMPLES.glob("*.py") if re.search(rf"\b{re.escape(script.stem)}(\.py\b|:)", tests)
    }


def is_run_by_a_test(path: str, scripts: set[str]) -> bool:
    parts = Path(path).relative_to("examples").parts
    if len(parts) == 1:
        return Path(parts[0]).stem in scripts
    package = re.escape(parts[0])
    uses = re.compile(rf"^\s*(from|import)\s+{package}\b|[\"']{package}[.\"']", re.MULTILINE)
    return any(uses.search((EXAMPLES / f"{script}.py").read_text(encoding="utf-8")) for script in scripts)


def test_the_docs_have_python_examples_at_all() -> None:
    assert len(python_blocks()) >= 20


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: b.where)
def test_every_python_block_is_the_code_of_the_example_it_names(block: Block) -> None:
    problem = problem_with(block)
    assert problem is None, f"{block.where}: {problem}"


def test_every_included_example_is_run_by_a_test() -> None:
    scripts = scripts_run_by_tests()
    orphans = {path: where for path, where in included_files().items() if not is_run_by_a_test(path, scripts)}
    assert not orphans, f"included by the docs but run by no test under tests/: {orphans}"


def test_the_rule_catches_code_without_a_source_missing_files_or_sections_and_stale_code(tmp_path: Path) -> None:
    fix = "\n".join(expected_code("examples/operations.py", "fix") or [])
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "```python\nprint('inline')\n```\n\n"
        "<!-- example: examples/nowhere.py -->\n```python\npass\n```\n\n"
        "<!-- example: examples/operations.py:no-such-section -->\n```python\npass\n```\n\n"
        "<!-- example: README.md -->\n```python\npass\n```\n\n"
        "<!-- example: examples/operations.py:fix -->\n```python\nentry = 'an older version'\n```\n\n"
        "````markdown\n```python\nnot a block of its own\n```\n````\n\n"
        f"<!-- example: examples/operations.py:fix -->\n```python\n{fix}\n```\n"
    )
    blocks = [b for b in code_blocks(page) if b.language in PYTHON]
    problems = [problem_with(b) for b in blocks]
    assert len(blocks) == 6
    assert problems[0] is not None and "named on the line before it" in problems[0]
    assert problems[1] is not None and "does not exist" in problems[1]
    assert problems[2] is not None and "no-such-section" in problems[2]
    assert problems[3] is not None and "not under examples/" in problems[3]
    assert problems[4] is not None and "dev.py docs" in problems[4]
    assert problems[5] is None
    assert is_run_by_a_test("examples/myapp/changes/_0001_create_users.py", {"operations"})
    assert not is_run_by_a_test("examples/myapp/startup.py", {"overview"})


def test_the_readme_snippet_runs_as_a_script_and_says_what_it_says(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    script = tmp_path / "readme.py"
    script.write_text(snippet)
    outputs = [
        subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        for _ in range(2)
    ]
    assert [(o.returncode, o.stdout.strip()) for o in outputs] == [
        (0, "SUCCESS ['create-users']"),
        (0, "NO_CHANGES []"),
    ]
    assert "prints `SUCCESS ['create-users']`" in readme and "prints `NO_CHANGES []`" in readme


def test_troubleshooting_says_what_every_error_means() -> None:
    import inspect

    import aioflamingock

    page = (DOCS / "troubleshooting.md").read_text()
    headings = set(re.findall(r"^### (\w+)$", page, re.MULTILINE))
    raised = {
        name
        for name in aioflamingock.__all__
        if inspect.isclass(getattr(aioflamingock, name))
        and issubclass(getattr(aioflamingock, name), Warning | Exception)
    }
    assert raised - headings == set(), "docs/troubleshooting.md has no section for these"
    assert headings - raised == set(), "docs/troubleshooting.md has a section for what the library does not export"
