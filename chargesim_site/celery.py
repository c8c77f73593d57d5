"""Celery application: imports and scheduled jobs. Eager (in-process) without REDIS_URL."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chargesim_site.settings")

app = Celery("chargesim")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
