"""The shop's changes (`examples/cli_app.py`): one per module, applied in the order of the number in its name."""
