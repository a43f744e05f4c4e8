"""myapp's changes: one per module, applied in the order of the number in the module name."""
