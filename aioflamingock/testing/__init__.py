"""Testing helpers for aioflamingock and for third-party backends. Needs `pytest` and `pytest-asyncio`.

- `AuditStoreConformance`: what every audit store and its lock must do. Subclass it in your store's test module
  and provide a `store` fixture.
- `BackendProtocol`: the safety protocol's scenarios (the shared transaction, the marker path, takeovers, commits
  that abort or lose their answer, concurrent instances), run through real runs; and, where another process can
  build the kit (`ProtocolKit.process_kit`), with real processes SIGKILLed in each path, eight started at once and
  the backing stopped under a run. Subclass it and provide a `kit` fixture: your `ProtocolKit`, which builds an
  `Instance` of the application and writes and counts effects.
"""

from ._protocol import BackendProtocol, Instance, ProtocolKit, simulated_aborts
from ._suite import AuditStoreConformance, ManualClock, assert_no_overlap, make_entry

__all__ = [
    "AuditStoreConformance",
    "BackendProtocol",
    "Instance",
    "ManualClock",
    "ProtocolKit",
    "assert_no_overlap",
    "make_entry",
    "simulated_aborts",
]
