"""Discovery of change modules named `_<ORDER>_<name>.py` in packages on disk."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from aioflamingock import ChangeLoadError, ConfigurationError, Flamingock, NonTransactionalTargetSystem, RunStatus
from tests.conftest import WritePackage

from ._support import SpyStore, history, recording_change


def change_module(class_name: str, change_id: str, *, extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        from aioflamingock import Change


        class {class_name}(Change):
            id = "{change_id}"
            author = "tester"
            target_system = "app"
            transactional = False
            {extra}

            async def execute(self, ctx):
                ctx["calls"].append(self.id)
        """
    )


def engine(store: SpyStore, target: NonTransactionalTargetSystem, *sources: object) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=[target], changes=sources)  # type: ignore[arg-type]


async def assert_rejected(fl: Flamingock, store: SpyStore, calls: list[str], *fragments: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        await fl.run()
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert store.lock_attempts == []
    assert await history(store) == []
    assert calls == []
    return caught.value


async def test_modules_run_in_the_order_of_their_names(
    write_package: WritePackage, store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    package = write_package(
        {
            "_0010_third.py": change_module("Third", "third"),
            "_0001_first.py": change_module("First", "first"),
            "_0002_second.py": change_module("Second", "second"),
        }
    )
    fl = engine(store, target, package)

    specs = fl.changes()
    report = await fl.run()

    assert [(s.id, s.order) for s in specs] == [("first", "0001"), ("second", "0002"), ("third", "0010")]
    assert specs[0].source_file is not None and specs[0].source_file.endswith("_0001_first.py")
    assert calls == ["first", "second", "third"]
    assert report.applied == ["first", "second", "third"]
    assert [e.change_order for e in await history(store) if e.state.value == "APPLIED"] == ["0001", "0002", "0010"]


async def test_an_order_on_the_class_overrides_the_module_name(
    write_package: WritePackage, store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    package = write_package(
        {
            "_0001_late.py": change_module("Late", "late", extra='order = "0003"'),
            "_0002_early.py": change_module("Early", "early"),
        }
    )
    await engine(store, target, package).run()
    assert calls == ["early", "late"]


async def test_flamingock_style_module_names_work(
    write_package: WritePackage, store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    package = write_package(
        {
            "_20240102__SecondChange.py": change_module("SecondChange", "second"),
            "_20240101__FirstChange.py": change_module("FirstChange", "first"),
        }
    )
    fl = engine(store, target, package)
    assert [s.order for s in fl.changes()] == ["20240101", "20240102"]
    await fl.run()
    assert calls == ["first", "second"]


async def test_other_modules_and_imported_base_classes_are_ignored(
    write_package: WritePackage, store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    base = textwrap.dedent(
        """
        from aioflamingock import Change


        class AppChange(Change):
            author = "tester"
            target_system = "app"
            transactional = False

            async def execute(self, ctx):
                ctx["calls"].append(self.id)
        """
    )
    package = write_package(
        {
            "base.py": base,
            "_private.py": "raise RuntimeError('never imported: not a change module')\n",
            "_0001_a.py": 'from .base import AppChange\n\n\nclass A(AppChange):\n    id = "a"\n',
        }
    )
    report = await engine(store, target, package).run()
    assert report.applied == ["a"]
    assert calls == ["a"]


async def test_a_package_with_no_change_modules_is_fine(
    write_package: WritePackage, store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    package = write_package({"helpers.py": "VALUE = 1\n"})
    report = await engine(store, target, package).run()
    assert report.status is RunStatus.NO_CHANGES
    assert report.changes == []
    assert store.lock_attempts == []


async def test_packages_and_explicit_classes_mix(
    write_package: WritePackage, store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    package = write_package({"_0002_b.py": change_module("B", "b")})
    await engine(store, target, package, recording_change("a", "0001")).run()
    assert calls == ["a", "b"]


async def test_a_module_that_fails_to_import_names_its_file(
    write_package: WritePackage,
    package_root: Path,
    store: SpyStore,
    target: NonTransactionalTargetSystem,
    calls: list[str],
) -> None:
    package = write_package(
        {
            "_0001_good.py": change_module("Good", "good"),
            "_0002_broken.py": "import os\nraise RuntimeError('cannot reach the config service')\n",
        }
    )
    fl = engine(store, target, package)
    path = str(package_root / package / "_0002_broken.py")
    error = await assert_rejected(fl, store, calls, path, "RuntimeError: cannot reach the config service")
    assert isinstance(error, ChangeLoadError)
    assert isinstance(error.__cause__, RuntimeError)


async def test_a_module_with_a_syntax_error_names_its_file(
    write_package: WritePackage,
    package_root: Path,
    store: SpyStore,
    target: NonTransactionalTargetSystem,
    calls: list[str],
) -> None:
    package = write_package({"_0001_typo.py": "class Oops(:\n"})
    path = str(package_root / package / "_0001_typo.py")
    error = await assert_rejected(engine(store, target, package), store, calls, path, "SyntaxError")
    assert isinstance(error, ChangeLoadError)


@pytest.mark.parametrize("filename", ["_001_short.py", "_1_x.py", "_0001.py"])
async def test_a_module_whose_name_has_no_valid_order_is_rejected(
    write_package: WritePackage,
    package_root: Path,
    store: SpyStore,
    target: NonTransactionalTargetSystem,
    calls: list[str],
    filename: str,
) -> None:
    package = write_package({"_0001_good.py": change_module("Good", "good"), filename: change_module("X", "x")})
    path = str(package_root / package / filename)
    await assert_rejected(
        engine(store, target, package), store, calls, path, "`_<ORDER>_<name>.py` with ORDER of at least 4 characters"
    )


async def test_a_module_with_two_changes_is_rejected(
    write_package: WritePackage, store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    two = change_module("One", "one") + change_module("Two", "two").replace("from aioflamingock import Change", "")
    package = write_package({"_0001_two.py": two})
    await assert_rejected(
        engine(store, target, package),
        store,
        calls,
        "_0001_two.py: defines 2 Change subclasses (One, Two); put one change in each module",
    )


async def test_a_change_module_without_a_change_is_rejected(
    write_package: WritePackage, store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    package = write_package({"_0001_empty.py": "VALUE = 1\n"})
    await assert_rejected(engine(store, target, package), store, calls, "_0001_empty.py: defines no Change subclass")


async def test_duplicate_ids_across_modules_name_both_files(
    write_package: WritePackage, store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    package = write_package({"_0001_a.py": change_module("A", "same"), "_0002_b.py": change_module("B", "same")})
    await assert_rejected(
        engine(store, target, package), store, calls, "_0002_b.py: B.id 'same' is also the id of A", "_0001_a.py"
    )


async def test_a_module_instead_of_a_package_is_rejected(
    package_root: Path, store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    name = f"single_{uuid.uuid4().hex[:12]}"
    (package_root / f"{name}.py").write_text(change_module("A", "a"))
    await assert_rejected(engine(store, target, name), store, calls, f"{name!r}", "is a module, not a package")
