"""The protocol kit's real-process scenarios: instances of the application in processes of their own (`_child.py`),
SIGKILLed in the middle of each path of the safety protocol, eight of them started at once, the backing stopped under
a run; what they left is read back through a kit instance of this process and the public API.

A kit takes part by saying how a child builds it (`ProtocolKit.process_kit`); the scenarios skip otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from .. import AuditEntry, AuditState, LockInfo, LockLostError, ManualInterventionRequiredError, Marker, TxStrategy
from ._child import ERROR_PREFIX, EXIT_CODES, ChildSpec, changes_of

if TYPE_CHECKING:
    from ._protocol import Instance, ProtocolKit

__all__ = ["Children", "ProcessScenarios"]

SERVICE = "default"
LEASE_SECONDS = 1.5
"""The children's lease: short, so that a dead holder's lease ends soon."""
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 60.0
OK = 0
STARTED, APPLIED = AuditState.STARTED, AuditState.APPLIED


@dataclass(frozen=True)
class Exited:
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """`<ErrorType>: <message>` of the exception that ended the run; empty if none did."""
        _, found, error = f"\n{self.stderr}".rpartition(f"\n{ERROR_PREFIX}")
        return error.strip() if found else ""

    @property
    def execution_id(self) -> str:
        for token in self.stdout.split():
            if token.startswith("execution_id="):
                return token.partition("=")[2]
        raise AssertionError(f"no execution id in the output: {self}")


class Child:
    """A running child process."""

    def __init__(self, popen: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.popen, self._out, self._err = popen, out, err

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return f"stdout: {self._out.read_text()!r}\nstderr: {self._err.read_text()!r}"

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the process."""
        self.popen.kill()
        self.popen.wait(EXIT_TIMEOUT)

    def pause(self) -> None:
        """SIGSTOP, and wait until the process is really stopped (the signal is delivered asynchronously)."""
        os.kill(self.popen.pid, signal.SIGSTOP)
        _, status = os.waitpid(self.popen.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), f"process {self.popen.pid} did not stop\n{self.output()}"

    def resume(self) -> None:
        os.kill(self.popen.pid, signal.SIGCONT)

    async def wait(self, within: float = EXIT_TIMEOUT) -> Exited:
        try:
            await anyio.to_thread.run_sync(self.popen.wait, within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process {self.popen.pid} did not exit within {within}s\n{self.output()}") from None
        return Exited(self.popen.returncode, self._out.read_text(), self._err.read_text())


class Children:
    """The child processes of one scenario, an effects file and a signal folder in `directory`, and what the children
    left, read through an instance of `kit` in this process (opened on first read, so that the children meet the
    backing as they would at a first deployment)."""

    def __init__(self, kit: ProtocolKit, directory: Path, instance: Instance) -> None:
        self.kit, self.instance, self.directory = kit, instance, directory
        factory, args = kit.process_kit()
        self.effects_file = directory / "effects.txt"
        self.signals = directory / "signals"
        self.signals.mkdir()
        self.spec = ChildSpec(factory, args, str(self.effects_file), str(self.signals), lease_seconds=LEASE_SECONDS)
        self.children: list[Child] = []
        self._opened: AsyncExitStack | None = None

    def declared(self, copies: int = 1) -> list[str]:
        return [change_id for change_id, _, _ in changes_of(self.kit, self.instance, copies)]

    # -- children ---------------------------------------------------------------------------------------------------

    def start(self, **options: Any) -> Child:
        n = len(self.children)
        out, err = self.directory / f"child-{n}.out", self.directory / f"child-{n}.err"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen(replace(self.spec, **options).command(), stdout=stdout, stderr=stderr, env=env)
        self.children.append(Child(popen, out, err))
        return self.children[-1]

    async def run(self, **options: Any) -> Exited:
        return await self.start(**options).wait()

    async def wait_ready(self, child: Child, change_id: str) -> str:
        """Wait until `change_id` is parked in `child`; return the execution id of the child's run."""
        ready = self.signals / f"{change_id}.ready"
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.exists():
            if not child.running() and not ready.exists():
                raise AssertionError(f"the child exited before {change_id} was parked\n{child.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{change_id} was not parked within {START_TIMEOUT}s\n{child.output()}")
            await anyio.sleep(0.01)
        execution_id, pid = ready.read_text().split()
        assert int(pid) == child.popen.pid
        ready.unlink()
        return execution_id

    def go(self, change_id: str) -> None:
        (self.signals / f"{change_id}.go").touch()

    async def kill(self, child: Child) -> None:
        """SIGKILL `child`, then the kit's `after_kill`."""
        child.kill()
        await self.kit.after_kill()

    def cleanup(self) -> None:
        for child in self.children:
            if child.running():
                child.kill()

    async def close(self) -> None:
        self.cleanup()
        if self._opened is not None:
            await self._opened.aclose()

    # -- what the children left ------------------------------------------------------------------------------------

    def _lines(self) -> list[list[str]]:
        text = self.effects_file.read_text() if self.effects_file.exists() else ""
        return [line.split() for line in text.splitlines()]

    def effects(self) -> Counter[str]:
        """How many times each change's `execute` started, over every child."""
        return Counter(change_id for change_id, _, _ in self._lines())

    def executions(self, change_id: str) -> list[str]:
        """The runs that started `change_id`'s `execute`, in order."""
        return [execution for ran, execution, _ in self._lines() if ran == change_id]

    async def committed(self, change_id: str) -> list[str]:
        """The runs whose writes of `change_id` the backing holds, each exactly once."""
        found = {
            execution: await self.kit.count(f"{change_id}@{execution}") for execution in self.executions(change_id)
        }
        assert set(found.values()) <= {0, 1}, f"{change_id}: a run's writes were committed twice: {found}"
        committed = [execution for execution, n in found.items() if n]
        assert await self.kit.count(change_id) == len(committed), f"{change_id}: effects of no run the tests know"
        return committed

    async def _open(self) -> Instance:
        if self._opened is None:
            self._opened = AsyncExitStack()
            await self._opened.enter_async_context(self.instance.store)
            if self.instance.other is not None:
                await self._opened.enter_async_context(self.instance.other)
        return self.instance

    async def audit(self, change_id: str | None = None) -> list[AuditEntry]:
        store = (await self._open()).store
        return [e async for e in store.history() if change_id in (None, e.change_id)]

    async def states(self, change_id: str) -> list[AuditState]:
        return [e.state for e in await self.audit(change_id)]

    async def applied(self) -> dict[str, list[str]]:
        """change id -> the runs of its APPLIED entries."""
        applied: dict[str, list[str]] = {}
        for entry in await self.audit():
            if entry.state is APPLIED:
                applied.setdefault(entry.change_id, []).append(entry.execution_id)
        return applied

    async def lock(self) -> LockInfo | None:
        return await (await self._open()).store.lock.read(SERVICE)

    async def markers(self) -> list[Marker]:
        other = (await self._open()).other
        if other is None:
            return []
        found = [await other.read_marker(change_id) for change_id in self.effects() if change_id.startswith("marker")]
        return [marker for marker in found if marker is not None]


class ProcessScenarios:
    """What real processes prove on every backend whose kit a child can build. Mixed into `BackendProtocol`."""

    @pytest.fixture
    async def kit(self) -> AsyncIterator[ProtocolKit]:
        raise NotImplementedError("override the `kit` fixture")
        yield  # pragma: no cover

    @pytest.fixture
    async def outage_kit(self) -> AsyncIterator[ProtocolKit]:
        pytest.skip("no outage_kit fixture: a kit on a backing the test can stop and start again")
        yield  # pragma: no cover

    @staticmethod
    async def _children(kit: ProtocolKit, directory: Path) -> Children:
        try:
            kit.process_kit()
        except NotImplementedError as exc:
            pytest.skip(str(exc) or "this kit cannot be built in another process")
        children = Children(kit, directory, await kit.instance())
        kit.exit_stack.push_async_callback(children.close)
        return children

    async def _killed_in(
        self, kit: ProtocolKit, directory: Path, change_id: str, **options: Any
    ) -> tuple[Children, str]:
        """A child SIGKILLed while parked in `change_id` (`hang`, unless `options` park it elsewhere); the children
        and the killed run's execution id."""
        children = await self._children(kit, directory)
        self._needs(children, change_id)
        victim = children.start(**({"hang": change_id} | options))
        crashed = await children.wait_ready(victim, change_id)
        await children.kill(victim)
        return children, crashed

    @staticmethod
    def _needs(children: Children, change_id: str) -> None:
        if change_id not in children.declared():
            reason = children.kit.transactions_skip if change_id.startswith("shared") else None
            pytest.skip(reason or "this backend has no target that cannot share the store's transactions")

    async def test_a_process_killed_in_a_non_transactional_change_leaves_it_to_a_human(
        self, kit: ProtocolKit, tmp_path: Path
    ) -> None:
        """The next run refuses (recovery MANUAL_INTERVENTION), writing nothing, and names the fix."""
        children, crashed = await self._killed_in(kit, tmp_path, "nontx-1")
        assert await children.states("nontx-1") == [STARTED]
        assert await children.lock() is not None, "the dead process's lease should still be in the store"
        before = await children.audit()

        refused = await children.run()

        assert refused.code == EXIT_CODES[ManualInterventionRequiredError], refused
        assert refused.error.startswith("ManualInterventionRequiredError: change 'nontx-1' "), refused
        assert refused.error.endswith("then record what happened: fix('nontx-1', 'applied' or 'rolled-back')")
        assert await children.audit() == before, "a refused run wrote to the audit"
        assert children.executions("nontx-1") == [crashed]

    async def test_a_process_killed_in_a_non_transactional_change_under_always_retry_is_run_again(
        self, kit: ProtocolKit, tmp_path: Path
    ) -> None:
        """The next run waits for the dead lease, runs the change again and records it."""
        children, crashed = await self._killed_in(kit, tmp_path, "nontx-1", retry_nontx=True)

        rerun = await children.run(retry_nontx=True)

        assert rerun.code == OK, rerun
        assert children.effects() == dict.fromkeys(children.declared(), 1) | {"nontx-1": 2}
        assert children.executions("nontx-1") == [crashed, rerun.execution_id]
        assert await children.committed("nontx-1") == [crashed, rerun.execution_id], "not transactional: both stay"
        assert await children.states("nontx-1") == [STARTED, STARTED, APPLIED]
        assert (await children.applied())["nontx-1"] == [rerun.execution_id]
        assert await children.lock() is None, "the run released the lock"

    async def test_a_process_killed_in_a_shared_transaction_leaves_nothing_and_the_next_run_applies_once(
        self, kit: ProtocolKit, tmp_path: Path
    ) -> None:
        children, crashed = await self._killed_in(kit, tmp_path, "shared-1")
        assert await children.audit() == [], "nothing is recorded before the shared transaction commits"
        assert await children.committed("shared-1") == []
        assert await children.lock() is not None, "the dead process's lease should still be in the store"

        rerun = await children.run()

        assert rerun.code == OK, rerun
        assert children.executions("shared-1") == [crashed, rerun.execution_id]
        assert await children.committed("shared-1") == [rerun.execution_id]
        assert await children.states("shared-1") == [APPLIED]
        assert await children.applied() == {change_id: [rerun.execution_id] for change_id in children.declared()}
        assert await children.lock() is None, "the run released the lock"

    async def test_a_process_killed_before_its_marker_commit_is_applied_again_without_a_human(
        self, kit: ProtocolKit, tmp_path: Path
    ) -> None:
        children, crashed = await self._killed_in(kit, tmp_path, "marker-1")
        [started] = await children.audit("marker-1")
        assert (started.state, started.tx_strategy, started.execution_id) == (
            STARTED,
            TxStrategy.TX_AUDIT_STORE_SYNC,
            crashed,
        )
        assert (await children.markers(), await children.committed("marker-1")) == ([], [])

        rerun = await children.run()  # recovery MANUAL_INTERVENTION: the missing marker settles it, not a human

        assert rerun.code == OK, rerun
        assert children.executions("marker-1") == [crashed, rerun.execution_id]
        assert await children.committed("marker-1") == [rerun.execution_id]
        assert await children.states("marker-1") == [STARTED, STARTED, APPLIED]
        assert (await children.applied())["marker-1"] == [rerun.execution_id]
        assert await children.markers() == []

    async def test_a_process_killed_after_its_marker_commit_is_recorded_without_running_again(
        self, kit: ProtocolKit, tmp_path: Path
    ) -> None:
        """Killed between its target's commit (the change and its marker) and its APPLIED entry: the next run
        records APPLIED from the marker without running the change, and deletes the marker."""
        children, crashed = await self._killed_in(kit, tmp_path, "marker-1", park_after_commit="marker-1", hang=None)
        assert await children.markers() == [Marker("marker-1", crashed)]
        assert await children.committed("marker-1") == [crashed]
        assert await children.states("marker-1") == [STARTED]

        rerun = await children.run()

        assert rerun.code == OK, rerun
        assert children.executions("marker-1") == [crashed], "the committed change ran again"
        assert await children.committed("marker-1") == [crashed]
        *_, applied = await children.audit("marker-1")
        assert (applied.state, applied.execution_id) == (APPLIED, rerun.execution_id)
        assert applied.metadata == {"recoveredFromExecutionId": crashed}
        assert await children.states("marker-1") == [STARTED, APPLIED]
        assert await children.markers() == [], "the marker is deleted once APPLIED is recorded"
        assert children.effects() == dict.fromkeys(children.declared(), 1)

    async def test_eight_processes_started_at_once_apply_every_change_exactly_once(
        self, kit: ProtocolKit, tmp_path: Path
    ) -> None:
        """A small delay per change keeps the lock held across renewals while the others poll for it. Recovery is
        MANUAL_INTERVENTION: the STARTED entries the others see while the first applies must not stop them."""
        children = await self._children(kit, tmp_path)
        started = [children.start(copies=2, delay=0.1) for _ in range(8)]
        exits = [await child.wait(90) for child in started]

        assert [e.code for e in exits] == [OK] * 8, exits
        declared = children.declared(copies=2)
        assert children.effects() == dict.fromkeys(declared, 1), "some execute ran more or less than once"
        applied = await children.applied()
        assert sorted(applied) == sorted(declared)
        assert all(len(executions) == 1 for executions in applied.values()), applied
        assert not [e for e in await children.audit() if e.state not in (STARTED, APPLIED)]
        for change_id, by in applied.items():
            assert await children.committed(change_id) == by
        assert await children.markers() == []
        assert await children.lock() is None

    @pytest.mark.parametrize("hang", ["shared-1", "marker-1"])
    async def test_a_holder_paused_past_its_lease_inside_a_transaction_never_commits_after_a_takeover(
        self, kit: ProtocolKit, tmp_path: Path, hang: str
    ) -> None:
        """SIGSTOP inside the change's transaction until its lease is long over, while another instance starts;
        then SIGCONT. Whichever order the backing imposes (the other waits for the paused one's locks, or takes the
        lock over and is refused by nothing), the change is committed by exactly one run, with one APPLIED entry,
        and a run that lost the lock says so."""
        children = await self._children(kit, tmp_path)
        self._needs(children, hang)
        paused = children.start(hang=hang)
        paused_run = await children.wait_ready(paused, hang)
        paused.pause()
        await anyio.sleep(LEASE_SECONDS + 0.5)
        other = children.start()
        await anyio.sleep(1.0)  # it takes the lock over, or waits for the paused one's locks

        children.go(hang)
        paused.resume()
        resumed, finished = await paused.wait(), await other.wait()

        assert finished.code == OK, finished
        assert resumed.code in (OK, EXIT_CODES[LockLostError]), resumed
        applied = await children.applied()
        assert all(len(executions) == 1 for executions in applied.values()), applied
        [entry] = [e for e in await children.audit(hang) if e.state is APPLIED]
        committed = await children.committed(hang)
        by = entry.metadata.get("recoveredFromExecutionId", entry.execution_id)  # recovered from a marker, or its own
        assert committed == [by], "the change was committed by another run than the audit says"
        assert committed[0] in (paused_run, finished.execution_id)
        assert await children.markers() == []
        assert await children.lock() is None

    @pytest.mark.parametrize("hang", ["shared-1", "marker-1"])
    async def test_the_backing_stopped_during_a_change_ends_the_run_and_a_later_run_completes(
        self, outage_kit: ProtocolKit, tmp_path: Path, hang: str
    ) -> None:
        """Renewals cannot reach the backing before the lease ends: the change is cancelled, the run says why and
        records nothing; once the backing is back, the next run applies the change once."""
        children = await self._children(outage_kit, tmp_path)
        self._needs(children, hang)
        victim = children.start(hang=hang)
        crashed = await children.wait_ready(victim, hang)
        before = await children.audit()

        await outage_kit.stop_backing()
        ended = await victim.wait(30)

        assert ended.code == EXIT_CODES[LockLostError], ended
        assert ended.error.startswith("LockLostError: lost lock 'default': "), ended
        # Renewals that hang until the lease ends, or that fail at once until it ends (a refused connection):
        hung = "no renewal was confirmed before our lease ended" in ended.error and "unreachable" in ended.error
        assert hung or "failed while renewing lock 'default'" in ended.error, ended
        await outage_kit.start_backing()
        assert await children.audit() == before, "something was recorded after the backing went away"
        assert await children.committed(hang) == [], "the uncommitted change's writes survived"
        assert await children.markers() == []

        rerun = await children.run()

        assert rerun.code == OK, rerun
        assert children.executions(hang) == [crashed, rerun.execution_id]
        assert await children.committed(hang) == [rerun.execution_id]
        applied = await children.applied()
        assert sorted(applied) == sorted(children.declared())
        assert all(len(executions) == 1 for executions in applied.values()), applied
        assert children.effects() == dict.fromkeys(children.declared(), 1) | {hang: 2}
        assert await children.markers() == []
        assert await children.lock() is None
