"""A small application for the documentation's examples: its changes (`myapp.changes`), a stand-in for a search
service (`myapp.search`) and the one function that builds its engine (`myapp.startup.build_flamingock`)."""
