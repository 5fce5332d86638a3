"""Training protocols: what a CLIP method trains on, one config key recorded with every run.

``TRAINER.PROTOCOL`` is one of

- ``exact`` (default): the published protocol. Every epoch, every train image is read, augmented
  with INPUT.TRANSFORMS and encoded anew; CPU fp32 results are bit-identical to upstream's.
- ``views:V``: V augmented views of each train image, encoded once (and kept in the feature
  store, shared with every run that uses the same image); each epoch trains on one view per
  image. How views are drawn and seeded: trainers/views.py. V is at most MAX_VIEWS (1000).
- ``plain``: one un-augmented view (the test transform) of each train image, encoded once.

``TRAINER.FEATURE_CACHE.TRAIN True`` is the older spelling of ``plain`` and keeps working.

``protocol_of`` reads the protocol from a run's CfgNode or from its config.yaml, so results tools
and the trainers resolve the alias the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EXACT, VIEWS, PLAIN = "exact", "views", "plain"
PROTOCOL_KEY = "TRAINER.PROTOCOL"
# Every view of every train image is encoded before training, and each epoch trains on one view
# per image: beyond the epochs a run trains (the shipped configs train at most 200), more views
# cost more than exact, which encodes each image once per epoch, and are mostly never trained on.
MAX_VIEWS = 1000
ALIAS_KEY = "TRAINER.FEATURE_CACHE.TRAIN"


class ProtocolError(ValueError):
    """A TRAINER.PROTOCOL value that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Protocol:
    kind: str  # EXACT, VIEWS or PLAIN
    views: int = 1  # augmented views per train image (VIEWS only)

    def __str__(self) -> str:
        return f"{VIEWS}:{self.views}" if self.kind == VIEWS else self.kind

    @property
    def trains_on_features(self) -> bool:
        """Whether train images are encoded once (views, plain) rather than every epoch."""
        return self.kind != EXACT


def parse_protocol(text: str) -> Protocol:
    """``"exact"``, ``"plain"`` or ``"views:V"`` (1 <= V <= MAX_VIEWS) as a Protocol."""
    value = str(text).strip()
    if value in (EXACT, PLAIN):
        return Protocol(value)
    kind, _, count = value.partition(":")
    if kind == VIEWS and count.isdigit() and 1 <= int(count) <= MAX_VIEWS:
        return Protocol(VIEWS, int(count))
    if kind == VIEWS and count.isdigit() and int(count) > MAX_VIEWS:
        raise ProtocolError(
            f"{PROTOCOL_KEY} is {text!r}: at most {MAX_VIEWS} views per train image. Every view "
            "is encoded before training and each epoch trains on one, so views beyond the "
            "epochs trained are never used; for fresh augmentations every epoch use exact."
        )
    raise ProtocolError(
        f"{PROTOCOL_KEY} is {text!r}; choose exact (the published protocol), views:V (V "
        "augmented views per train image, encoded once, e.g. views:10) or plain (one "
        "un-augmented view per image)"
    )


def _lookup(config: Any, key: str) -> Any:
    """``key`` (dotted) from a CfgNode / nested dict, or from a flattened config.yaml."""
    if isinstance(config, Mapping) and key in config:
        return config[key]
    node = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def protocol_of(config: Any) -> Protocol:
    """The training protocol of a run: from its CfgNode, or its config.yaml (nested or flattened).

    A config without TRAINER.PROTOCOL (written before the key existed) trained ``plain`` when
    TRAINER.FEATURE_CACHE.TRAIN was set, else ``exact``. The alias combined with another protocol
    than exact or plain is refused, naming both keys.
    """
    protocol = parse_protocol(_lookup(config, PROTOCOL_KEY) or EXACT)
    if not _lookup(config, ALIAS_KEY):
        return protocol
    if protocol.kind == EXACT or protocol.kind == PLAIN:
        return Protocol(PLAIN)
    raise ProtocolError(
        f"{ALIAS_KEY} True means {PROTOCOL_KEY} plain, but {PROTOCOL_KEY} is {protocol}. Fix: "
        f"drop {ALIAS_KEY} (or set it to False) and keep {PROTOCOL_KEY} {protocol}."
    )
