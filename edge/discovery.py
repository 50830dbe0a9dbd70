"""Home Assistant MQTT discovery: the retained config messages that announce one moodmic device.

What Home Assistant requires, checked against its MQTT docs (integrations/sensor.mqtt, event.mqtt,
mqtt#discovery-messages) and the schemas in homeassistant/components/mqtt/{sensor,event,schemas}.py:
- every entity: `state_topic` (required); `unique_id`, or the `device` block is ignored;
- `device`: at least one of `identifiers`/`connections`, only known keys (an unknown key rejects the
  whole config); `origin`: `name` is required;
- sensor with `options`: `device_class` must be `enum`, and neither `unit_of_measurement` nor
  `state_class` may be set (so the confidence is a separate sensor);
- a sensor's template that renders the string "None" sets the state to unknown (mqtt/const.py
  PAYLOAD_NONE), which is how the confidence sensor shows silence;
- event: `event_types` (required); each payload is a JSON object with `event_type` in that list,
  the other keys become event attributes; retained event messages are ignored;
- `default_entity_id` ("<domain>.<object id>") replaces `object_id`, which HA deprecated in 2025.10
  and stops honouring in 2026.4;
- `expire_after` (seconds) turns a sensor unavailable when no state arrives for that long: a retained
  state from a daemon that is gone does not pass for the current one.
Which Home Assistant version honours which key: README, "MQTT contract".
Topics are <prefix>/<component>/<node id>/<object id>/config with ids in [a-zA-Z0-9_-].
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .schema import STATES_BEYOND_LABELS
from .topics import Topics


def discovery_configs(*, prefix: str, device_id: str, base: str, labels: tuple[str, ...], model_name: str,
                      qos: int, expire_after: int) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every entity of the device whose topics live under `base`."""
    states = list(dict.fromkeys((*labels, *STATES_BEYOND_LABELS)))
    topics = Topics.under(base)
    shared = {
        "availability_topic": topics.availability,
        "device": {"identifiers": [f"moodmic_{device_id}"], "name": f"moodmic {device_id}", "model": model_name,
                   "sw_version": __version__, "manufacturer": "moodmic"},
        "origin": {"name": "moodmic", "sw_version": __version__},
        "qos": qos,
    }

    def entity(component: str, object_id: str, name: str, **config: Any) -> tuple[str, dict[str, Any]]:
        unique = f"moodmic_{device_id}_{object_id}"
        payload = {"name": name, "unique_id": unique,
                   "default_entity_id": f"{component}.{unique.replace('-', '_')}", **config, **shared}
        return f"{prefix}/{component}/{device_id}/{object_id}/config", payload

    return [
        entity("sensor", "emotion", "Emotion", device_class="enum", options=states, icon="mdi:emoticon-outline",
               state_topic=topics.state, value_template="{{ value_json.label }}",
               json_attributes_topic=topics.state, expire_after=expire_after),
        entity("sensor", "confidence", "Emotion confidence", unit_of_measurement="%", state_class="measurement",
               suggested_display_precision=0, icon="mdi:gauge", state_topic=topics.state,
               value_template="{{ 'None' if value_json.confidence is none "
                              "else (value_json.confidence * 100) | round(1) }}", expire_after=expire_after),
        entity("event", "emotion_change", "Emotion change", event_types=states, icon="mdi:swap-horizontal",
               state_topic=topics.event),
    ]
