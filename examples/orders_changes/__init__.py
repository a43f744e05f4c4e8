"""The changes of the FastAPI, aiohttp and worker examples: one per module, applied in the order of the number in
the module name."""
