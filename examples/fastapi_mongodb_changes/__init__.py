"""The changes of `fastapi_mongodb.py`, one per module: `_<ORDER>_<name>.py`."""
