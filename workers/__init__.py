"""synthgate workers: the Celery app, the generate task, backends and storage."""
