"""Utilities: data helpers (:mod:`deepSTRF.utils.data`) and downloads (:mod:`deepSTRF.utils.download`).

Nothing is imported eagerly, so ``import deepSTRF.utils.data`` never needs matplotlib.
"""
