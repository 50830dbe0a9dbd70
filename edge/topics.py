"""The MQTT topics of one device: the one place that names them (publisher and discovery both read it)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Topics:
    """Every topic under `<base_topic>/<device_id>` (README, "MQTT contract"); the field name is the suffix."""

    availability: str  # `online` / `offline`, retained; the Last Will
    state: str  # the smoothed state, retained
    event: str  # one message per label change
    health: str  # the daemon's counters, QoS 0
    claim: str  # which process publishes as this device, retained: a second one is reported (edge.mqtt)

    @classmethod
    def under(cls, base: str) -> Topics:
        return cls(**{f.name: f"{base}/{f.name}" for f in fields(cls)})


def ha_status_topic(discovery_prefix: str) -> str:
    """Where Home Assistant announces `online` (discovery is then re-sent)."""
    return f"{discovery_prefix}/status"
