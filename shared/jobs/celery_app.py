"""The Celery application every service shares: queues, routes, reliability settings, task names.

The gateway only *sends* tasks by name (it never imports worker code); each worker imports its own
task module. Queues are explicit (``task_create_missing_queues=False``): a task routed to a queue no one
declared is an error, not a silently created queue. Tasks are acknowledged after they run
(``acks_late``) and a worker takes one at a time (prefetch 1), which is safe because every task writes
to deterministic keys, and a unit of work runs on one worker at a time (its lease in the job table). The
broker is Redis (``REDIS_URL``) or, in the embedded local mode, Celery's filesystem transport in
``BROKER_DIR``. No result backend is used: state, fan-in included, lives in the job table
(:mod:`emgpose.jobs.units`; docs/reliability.md says why not a chord).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue
from kombu.exceptions import ChannelError

from emgpose.settings import Settings, get_settings

QUEUES = ("preprocess", "train")

PREPROCESS_START = "emgpose.preprocess.start"
PREPROCESS_STATS = "emgpose.preprocess.stats"
PREPROCESS_MERGE = "emgpose.preprocess.merge"
PREPROCESS_WINDOWS = "emgpose.preprocess.windows"
PREPROCESS_GATHER = "emgpose.preprocess.gather"
TRAIN = "emgpose.train.fit"
EVALUATE = "emgpose.train.evaluate"
BENCHMARK = "emgpose.bench.compare"  # the comparative study: on the train queue, where the GPU workers are
PREDICT = "emgpose.predict.batch"  # batch prediction: the trainer has XGBoost and the model registry

ROUTES = {
    PREPROCESS_START: "preprocess",
    PREPROCESS_STATS: "preprocess",
    PREPROCESS_MERGE: "preprocess",
    PREPROCESS_WINDOWS: "preprocess",
    PREPROCESS_GATHER: "preprocess",
    TRAIN: "train",
    EVALUATE: "train",
    BENCHMARK: "train",
    PREDICT: "train",
}


def filesystem_options(folder: str) -> dict[str, object]:
    """Kombu's filesystem transport: every process reads and writes the same folder."""
    folder = os.path.abspath(folder)
    for sub in ("queue", "processed", "control"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    queue = os.path.join(folder, "queue")
    return {
        "data_folder_in": queue,
        "data_folder_out": queue,
        "processed_folder": os.path.join(folder, "processed"),
        "store_processed": False,
        "control_folder": os.path.join(folder, "control"),
        "polling_interval": 0.1,  # seconds between looks at the folder (the default is 1 s)
    }


def make_celery(name: str = "emgpose", settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery(name, broker=settings.broker_url, set_as_current=True)
    app.conf.update(
        task_queues=[Queue(q, routing_key=q) for q in QUEUES],
        task_routes={task: {"queue": queue, "routing_key": queue} for task, queue in ROUTES.items()},
        task_create_missing_queues=False,
        task_default_queue="preprocess",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        enable_utc=True,
    )
    if settings.redis_url is None:
        app.conf.broker_transport = "emgpose.jobs.fs_transport:Transport"  # atomic message files
        app.conf.broker_transport_options = filesystem_options(settings.broker_dir)
        app.conf.worker_enable_remote_control = False  # no broadcast mailbox on the filesystem transport
    else:
        # A message unacknowledged for this long is delivered again: the second line behind the reaper,
        # which sends a dead worker's unit again after HEARTBEAT_TIMEOUT_S. A redelivered message whose
        # unit a live worker still holds is dropped by the lease (emgpose.jobs.units.lease).
        app.conf.broker_transport_options = {"visibility_timeout": settings.visibility_timeout_s}
    return app


def send(app: Celery, task: str, *args: object, countdown: float | None = None) -> None:
    """Sends ``task`` to its queue (the caller has committed the job row first)."""
    app.send_task(task, args=list(args), queue=ROUTES[task], routing_key=ROUTES[task], countdown=countdown)


def queue_size(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` (not those a worker has taken): Redis and filesystem transports."""
    with app.connection_for_write() as connection:
        try:
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:  # Redis: no such queue (nothing was ever sent to it since the data was lost)
            return 0
