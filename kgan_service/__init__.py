"""The service core that both the HTTP API (``api/``) and the workers (``worker/``) stand on:
the artifact store and, as they move here, settings, the database, quotas and the job lifecycle.

Nothing in this package imports FastAPI or torch, so either side can load it alone; Celery only
to send messages by task name (kgan_service.queue).
"""
