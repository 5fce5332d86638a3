"""A lean engine with the Dassl.pytorch API subset that CoOp-family trainers and datasets use."""

__version__ = "0.1.0"
