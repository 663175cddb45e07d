"""RQ's own `WorkerPool` running the project's `Worker` class, for comparison only.

    python benchmarks/rq_pool.py N

The handlers are loaded before the pool forks, so every child has them; the pool builds
its workers itself, so they get RQ's defaults where the project's command would pass its
settings (`TW_WORKER_LOST_AFTER_SECONDS` and the metrics port are not applied here).
"""

import importlib
import os
import sys

from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

package = os.environ.get("BENCH_PACKAGE", "tw_webhook_receiver")
config = importlib.import_module(f"{package}.config")
connection = importlib.import_module(f"{package}.connection")
events = importlib.import_module(f"{package}.events")
registry = importlib.import_module(f"{package}.registry")
worker = importlib.import_module(f"{package}.worker")

settings = config.settings_from_env()
registry.registry.load(settings.handler_modules)
pool = WorkerPool(
    list(events.QUEUES),
    connection=connection.connect(settings),
    num_workers=int(sys.argv[1]),
    worker_class=worker.Worker,
    queue_class=worker.MovingQueue,
    serializer=JSONSerializer,
)
pool.start(logging_level="WARNING")
