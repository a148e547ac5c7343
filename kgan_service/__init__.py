"""The service core that both the HTTP API (``api/``) and the workers (``worker/``) stand on:
settings, the database and its tables, the artifact store, quotas, the workers' registry as
submissions read it, and the job lifecycle (kgan_service.jobs). Its refusals are its own
errors (kgan_service.errors), which the API turns into problem documents.

Nothing in this package imports FastAPI or torch, so either side can load it alone; Celery only
to send messages by task name (kgan_service.queue).
"""
