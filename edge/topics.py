"""The MQTT topics of one device: the one place that names them (publisher and discovery both read it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Every topic under `<base_topic>/<device_id>` (README, "MQTT contract")."""

    base: str

    @property
    def availability(self) -> str:
        """`online` / `offline`, retained; the Last Will."""
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        """The smoothed state, retained."""
        return f"{self.base}/state"

    @property
    def event(self) -> str:
        """One message per label change."""
        return f"{self.base}/event"

    @property
    def health(self) -> str:
        """The daemon's counters, QoS 0."""
        return f"{self.base}/health"


def ha_status_topic(discovery_prefix: str) -> str:
    """Where Home Assistant announces `online` (discovery is then re-sent)."""
    return f"{discovery_prefix}/status"
