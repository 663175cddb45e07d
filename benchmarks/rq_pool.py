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
worker = importlib.import_module(f"{package}.worker")

# The command's own worker, built here only to load the handlers and open the connection.
model = worker.build_worker(config.settings_from_env())
pool = WorkerPool(
    [queue.name for queue in model.queues],
    connection=model.connection,
    num_workers=int(sys.argv[1]),
    worker_class=worker.Worker,
    queue_class=worker.MovingQueue,
    serializer=JSONSerializer,
)
pool.start(logging_level="WARNING")
