"""Evaluation: EER / minDCF metrics, trial lists, verification scoring, AS-norm and plots.

Import the submodules directly: :mod:`voxvec.eval.metrics` (pure numpy),
:mod:`voxvec.eval.trials`, :mod:`voxvec.eval.verify`, :mod:`voxvec.eval.norm` and
:mod:`voxvec.eval.plots` (needs the ``plot`` extra).
"""
