"""A changes package with mistakes in it, to show how they are reported (`changes_discovery.py`)."""
