"""The MongoDB shop's changes: a shared-transaction change, a non-transactional one, another transactional one."""
