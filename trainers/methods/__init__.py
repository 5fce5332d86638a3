"""The methods, one module each, on the shared base in trainers/clip_base.py.

Importing the package imports every module in it, which registers each trainer in
TRAINER_REGISTRY and its config keys: a new method is a new file here (README, "Adding a method").
"""

from dassl.utils.registry import import_submodules

import_submodules(__name__, __path__)
