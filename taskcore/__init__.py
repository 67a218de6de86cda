"""synthgate's shared core: what the gateway and the workers both import.

Settings and the model catalog, the job contract, Redis key names, the Lua scripts and
their registry, task records and the status store, the fair queue and priorities, the
reaper, the Celery task message, S3 clients, image URL signing and webhook payloads. It
imports neither :mod:`gateway` nor :mod:`workers` (``tests/test_layout.py`` checks).
"""
