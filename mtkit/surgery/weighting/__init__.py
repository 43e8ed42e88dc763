"""Loss weightings: the task losses of a step -> the weighted total the trainer backwards once.

``LOSS_WEIGHTINGS`` is the one table of them (config validation, the CLI's help and docs/METHODS.md read
it); the contract is in ``base.py``. Adding one is a new file here plus one entry below; the tests in
tests/test_methods_weighting.py iterate the table.
"""
from __future__ import annotations

from mtkit.surgery.registry import MethodError, Registry
from mtkit.surgery.weighting.base import LossWeighting, WeightedLoss, stack_losses
from mtkit.surgery.weighting.dwa import DWA
from mtkit.surgery.weighting.famo import FAMO
from mtkit.surgery.weighting.gls import GLS
from mtkit.surgery.weighting.gradnorm import GradNorm
from mtkit.surgery.weighting.rlw import RLW
from mtkit.surgery.weighting.static import MainAuxWeights, Static
from mtkit.surgery.weighting.uncertainty import Uncertainty

__all__ = ["LOSS_WEIGHTINGS", "LossWeighting", "WeightedLoss", "stack_losses", "MethodError", "Static",
           "MainAuxWeights", "Uncertainty", "DWA", "RLW", "GLS", "GradNorm", "FAMO"]

LOSS_WEIGHTINGS = Registry("loss weighting", [Static, MainAuxWeights, Uncertainty, DWA, RLW, GLS, GradNorm, FAMO])
