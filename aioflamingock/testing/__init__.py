"""Testing helpers for aioflamingock and for third-party audit stores.

`AuditStoreConformance` is the suite every audit store passes: subclass it in your store's test module and
provide a `store` fixture. Needs `pytest` and `pytest-asyncio`.
"""

from ._suite import AuditStoreConformance, assert_no_overlap, make_entry

__all__ = ["AuditStoreConformance", "assert_no_overlap", "make_entry"]
