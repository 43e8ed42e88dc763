"""Gradient-combination methods on the Gram matrix: the table, and the pieces a driver needs.

``GRAM_METHODS`` is the one place that lists them (config validation, the CLI's help and docs/METHODS.md
read it); adding a method is a new file here plus one entry below, and the tests in
tests/test_methods_*.py pick it up. The contract is in ``base.py``; ``apply.py`` turns a (K, P) Jacobian
into an update with any method (tests, the 2-D toy, small experiments).
"""
from __future__ import annotations

from mtkit.surgery.methods.aligned_mtl import AlignedMTL
from mtkit.surgery.methods.apply import block_gram_matrices, update_from_jacobian
from mtkit.surgery.methods.base import GramWeighting, NonFiniteError, Step, Weights
from mtkit.surgery.methods.cagrad import CAGrad
from mtkit.surgery.methods.gradvac import GradVac
from mtkit.surgery.methods.imtl_g import IMTLG
from mtkit.surgery.methods.main_aux import MainAux
from mtkit.surgery.methods.mgda import MGDA
from mtkit.surgery.methods.nash_mtl import NashMTL
from mtkit.surgery.methods.pcgrad import PCGrad
from mtkit.surgery.methods.rgw import RGW
from mtkit.surgery.methods.sum import Mean, Sum
from mtkit.surgery.methods.upgrad import UPGrad
from mtkit.surgery.registry import MethodError, Registry

__all__ = ["GRAM_METHODS", "GramWeighting", "Weights", "Step", "NonFiniteError", "MethodError",
           "update_from_jacobian", "block_gram_matrices", "Sum", "Mean", "PCGrad", "MainAux", "MGDA", "CAGrad",
           "IMTLG", "AlignedMTL", "UPGrad", "NashMTL", "GradVac", "RGW"]

GRAM_METHODS = Registry("aggregation method", [
    Sum, Mean, PCGrad, MainAux, MGDA, CAGrad, IMTLG, AlignedMTL, UPGrad, NashMTL, GradVac, RGW,
])
