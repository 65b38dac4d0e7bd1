"""The trainer's Celery app: ``celery -A emgpose_trainer.worker worker --queues train --pool threads --concurrency 1``.

One job at a time per GPU, in a thread: no fork after CUDA is initialised, and pings are answered during a job.
"""

from __future__ import annotations

from emgpose.jobs.celery_app import make_celery
from emgpose.logs import setup_logging

setup_logging()
app = make_celery("emgpose-trainer")

import emgpose_trainer.predict_tasks  # noqa: E402,F401 - the predict job's task
import emgpose_trainer.tasks  # noqa: E402,F401 - registers the tasks on the app
