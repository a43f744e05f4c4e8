"""The changes of examples/fastapi_postgresql.py, applied in the order of their module names."""
