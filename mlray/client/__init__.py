"""The Python client: typed facades over the control-plane services.

    import mlray
    client = mlray.connect()
    with client.experiments.run("fraud") as run:
        client.experiments.log_metric(run.run_id, "loss", 0.3, step=1)
    client.registry.register("fraud", "model.pt", run_id=run.run_id)
"""

from __future__ import annotations

from mlray.client.alerts_client import AlertsClient
from mlray.client.entry import Client, connect
from mlray.client.facade import Who
from mlray.client.features_client import FeaturesClient
from mlray.client.keys_client import KeysClient
from mlray.client.monitoring_client import MonitoringClient
from mlray.client.quotas_client import QuotasClient
from mlray.client.registry_client import RegistryClient
from mlray.client.serving_client import ServingClient
from mlray.client.tracking_client import ExperimentsClient, JobsClient

__all__ = [
    "AlertsClient",
    "Client",
    "ExperimentsClient",
    "FeaturesClient",
    "JobsClient",
    "KeysClient",
    "MonitoringClient",
    "QuotasClient",
    "RegistryClient",
    "ServingClient",
    "Who",
    "connect",
]
