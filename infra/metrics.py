"""Prometheus metrics for workers: the Temporal runtime's own (`temporal_*`: task latencies,
poll counts, slots) and ours (`frontier_review_*`, see `domain/metrics.py`), on one endpoint.

A runtime owns its metrics endpoint, so it is made once per process by whoever starts
the workers (`python worker.py --metrics-port`, `frontier-review up --metrics-port`) and
handed to the client the workers use: never a module-level global.
"""

from __future__ import annotations

import os

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

METRICS_PORT_ENV = "FRONTIER_REVIEW_METRICS_PORT"
METRICS_HOST_ENV = "FRONTIER_REVIEW_METRICS_HOST"
DEFAULT_METRICS_HOST = "0.0.0.0"


def prometheus_runtime(port: int, host: str = DEFAULT_METRICS_HOST) -> Runtime:
    """A runtime serving http://HOST:PORT/metrics for every client and worker built on it."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}")))


def metrics_port_default() -> int | None:
    """The port from the environment, if set (a flag overrides it)."""
    value = os.environ.get(METRICS_PORT_ENV)
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{METRICS_PORT_ENV}={value!r} is not a port number")
    return int(value)


def metrics_host_default() -> str:
    return os.environ.get(METRICS_HOST_ENV, DEFAULT_METRICS_HOST)
