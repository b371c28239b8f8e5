"""The analyses: what advcal finds out about a model, each written once.

- :mod:`~advcal.analyses.audit`: calibration on clean and adversarial inputs, flags, verdicts;
- :mod:`~advcal.analyses.illusion`: is a robustness gain genuine or made by miscalibration;
- :mod:`~advcal.analyses.fixes`: which post-hoc calibrator survives attack;
- :mod:`~advcal.analyses.adversarial_sets`: attacked inputs stored once, audited many times;
- :mod:`~advcal.analyses.zeroshot`: the zero-shot CLIP robustness suite;
- ``text_audit``, ``text_illusion``, ``text_fixes``: the same three for text classifiers.

The public entry points are re-exported by :mod:`advcal.api` (``advcal.audit`` and friends).
Nothing is imported here, so ``import advcal.analyses.fixes`` loads only what it needs.

Layer (docs/architecture.md; lint-imports holds it): imports only from report, engine and the
layers below them.
"""
