"""Gunicorn settings for production, each overridable from the environment.

gunicorn -c gunicorn.conf.py '{{ cookiecutter.package_name }}.app:create_app()'
"""

import multiprocessing
import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Processes, not threads, give the concurrency: the view is short CPU work around one Redis
# round trip, and threads in one process only queue for its GIL. Measured on 2 cores (the
# template's `make bench`): 5 x 1 thread keeps the p99 at half the peak rate near 5-8 ms,
# 5 x 4 threads let it reach 12-15 ms, for the same throughput. `gthread` still keeps idle
# keep-alive connections open without tying up the process.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# gthread, but a connection gets a thread only once its whole request has come: a client
# that sends half a request and waits holds no thread, and is answered 408 after `timeout`
# (see http_worker.py; docs/reliability.md, "Slow clients").
worker_class = os.environ.get(
    "GUNICORN_WORKER_CLASS", "{{ cookiecutter.package_name }}.http_worker.BufferingWorker"
)
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# The sender waits for our answer; a request stuck longer than this is better retried. It
# is also how long a request may take to arrive.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then, so a slow leak in a dependency never becomes an outage.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "1000"))
# Build the app (and fail on a missing secret) once, before forking the workers.
preload_app = True
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# gunicorn refuses a request past these limits itself, before the receiver sees it, with a
# small HTML page of its own rather than the API's error shape (gunicorn has no hook for
# the app to answer it): 414 for a request line over limit_request_line bytes, 431 for a
# header field over limit_request_field_size bytes or more than limit_request_fields
# fields. The sender's requests stay far below them.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# gunicorn's control socket (for `gunicornc`) defaults to one path per user, which two
# instances on one host would fight over; opt in with GUNICORN_CONTROL_SOCKET=<path>.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
# Trust X-Forwarded-* only from these proxies (comma-separated addresses).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Metrics (see metrics.py): every worker process writes its counts to files in this
# directory, and the metrics port (`when_ready` below) sums them. It must be set before the
# app is imported, which is why it is done here. A directory you set is emptied at start,
# so counts begin at zero; without one, a private temporary directory is made and removed
# on exit.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir:
    os.makedirs(_metrics_dir, exist_ok=True)
    for _name in os.listdir(_metrics_dir):
        if _name.endswith(".db"):
            os.remove(os.path.join(_metrics_dir, _name))
else:
    _metrics_dir = tempfile.mkdtemp(prefix="tw-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def when_ready(server):
    """Serve the receiver's metrics from this master process, once, on a private port
    (TW_METRICS_PORT, default 9180, 0 for off; TW_METRICS_ADDR), never on the public one.

    A port already taken is logged, not fatal: webhooks matter more than their metrics,
    and Prometheus reports the missing target.
    """
    from {{ cookiecutter.package_name }}.config import settings_from_env
    from {{ cookiecutter.package_name }}.metrics import serve_receiver_metrics

    settings = settings_from_env()
    try:
        serve_receiver_metrics(settings)
    except OSError as exc:
        server.log.error(
            "metrics: cannot serve on %s:%d (%s); set TW_METRICS_PORT to a free port, or 0",
            settings.metrics_addr, settings.metrics_port, exc,
        )  # fmt: skip


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.path.basename(_metrics_dir).startswith("tw-metrics-"):
        shutil.rmtree(_metrics_dir, ignore_errors=True)
