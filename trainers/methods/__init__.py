"""The methods, one module each, on the shared base in trainers/clip_base.py.

Importing the package imports every module in it, which registers each trainer in
TRAINER_REGISTRY and its config keys: a new method is a new file here (README, "Adding a method").
A module that fails to import is reported by name and the other methods keep working; asking
for a trainer name that is not registered then raises that module's import error.
"""

from dassl.engine import TRAINER_REGISTRY
from dassl.utils.registry import import_submodules

import_submodules(__name__, __path__, isolate_in=TRAINER_REGISTRY)
