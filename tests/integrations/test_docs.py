"""Every Python example in the documentation is a file under `examples/` that a test runs.

A ```python block in `docs/*.md` must hold exactly one line, a pymdownx.snippets include of a file under
`examples/`, optionally of one section of it: `--8<-- "examples/operations.py:fix"`, the section being marked in
the file by `# --8<-- [start:fix]` and `# --8<-- [end:fix]`. Anything else, inline code included, fails.

An included file counts as run by a test when:

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

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
TESTS = ROOT / "tests"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
INCLUDE = re.compile(r'^[ \t]*--8<--[ \t]+"(?P<path>[^":]+)(?::(?P<section>[a-z][-_0-9a-z]*))?"[ \t]*$')
PYTHON = {"python", "py", "python3", "pycon"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    body: list[str]

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
            blocks.append(Block(page.name, start, language, body))
            opening = None
        else:
            body.append(line)
    assert opening is None, f"docs/{page.name}:{opening[0]}: code block never closed"
    return blocks


def python_blocks() -> list[Block]:
    return [b for page in sorted(DOCS.glob("*.md")) for b in code_blocks(page) if b.language in PYTHON]


def problem_with(block: Block) -> str | None:
    """Why `block` is not a single include of an existing example file or section; `None` when it is."""
    lines = [line for line in block.body if line.strip()]
    if len(lines) != 1 or not (match := INCLUDE.match(lines[0])):
        return 'must be exactly one line `--8<-- "examples/FILE.py[:SECTION]"`; move the code into examples/'
    path, section = match["path"], match["section"]
    if not path.startswith("examples/"):
        return f"includes {path}, which is not under examples/"
    file = ROOT / path
    if not file.is_file():
        return f"includes {path}, which does not exist"
    if section is not None:
        text = file.read_text(encoding="utf-8")
        for marker in (f"[start:{section}]", f"[end:{section}]"):
            if not re.search(rf"--8<--[ \t]+{re.escape(marker)}", text):
                return f"includes section {section!r} of {path}, which has no `# --8<-- {marker}` line"
    return None


def included_files() -> dict[str, list[str]]:
    """Every example file the docs include, with where."""
    found: dict[str, list[str]] = {}
    for block in python_blocks():
        for line in block.body:
            if match := INCLUDE.match(line):
                found.setdefault(match["path"], []).append(block.where)
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
def test_every_python_block_is_one_include_of_an_example(block: Block) -> None:
    problem = problem_with(block)
    assert problem is None, f"{block.where}: {problem}"


def test_every_included_example_is_run_by_a_test() -> None:
    scripts = scripts_run_by_tests()
    orphans = {path: where for path, where in included_files().items() if not is_run_by_a_test(path, scripts)}
    assert not orphans, f"included by the docs but run by no test under tests/: {orphans}"


def test_the_rule_catches_inline_code_and_missing_files_or_sections(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "```python\nprint('inline')\n```\n\n"
        '```python\n--8<-- "examples/nowhere.py"\n```\n\n'
        '```python\n--8<-- "examples/operations.py:no-such-section"\n```\n\n'
        '```python\n--8<-- "README.md"\n```\n\n'
        "````markdown\n```python\nnot a block of its own\n```\n````\n\n"
        '```python\n--8<-- "examples/operations.py:fix"\n```\n'
    )
    blocks = [b for b in code_blocks(page) if b.language in PYTHON]
    problems = [problem_with(b) for b in blocks]
    assert [b.line for b in blocks] == [3, 7, 11, 15, 25]
    assert problems[0] is not None and "exactly one line" in problems[0]
    assert problems[1] is not None and "does not exist" in problems[1]
    assert problems[2] is not None and "no-such-section" in problems[2]
    assert problems[3] is not None and "not under examples/" in problems[3]
    assert problems[4] is None
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
