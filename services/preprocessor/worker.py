"""The preprocess worker's Celery app: ``celery -A emgpose_preprocessor.worker worker --queues preprocess``.

Run with ``--pool threads`` (or ``solo``): a GPU worker must not fork once CUDA is initialised.
"""

from __future__ import annotations

from emgpose.jobs.celery_app import make_celery
from emgpose.logs import setup_logging

setup_logging()
app = make_celery("emgpose-preprocessor")

import emgpose_preprocessor.tasks  # noqa: E402,F401 - registers the tasks on the app
