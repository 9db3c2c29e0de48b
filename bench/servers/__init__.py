"""The reference servers the service is measured against: the naive baseline and the framework floor.

Each module exposes a module-level `app` for `python -m uvicorn bench.servers.<name>:app`.
"""
