"""CLIP methods on one shared base.

``trainers/methods/`` holds the methods, one module each; the other modules here are the shared
plumbing they stand on (clip_base.py, features.py, feature_store.py, ...). Importing the package
imports every module, which registers each trainer in TRAINER_REGISTRY and its config keys
(``TRAINER_REGISTRY.registered_names()`` lists them): a new method is a new file in
``trainers/methods/`` (README, "Adding a method"; docs/architecture.md).
"""

from dassl.utils.registry import import_submodules

import_submodules(__name__, __path__)
