"""advcal: can a classifier's confidence be trusted under adversarial attack?

advcal measures calibration (ECE, ACE, SCE, Brier, NLL, reliability diagrams, per class) on
clean and adversarial inputs. Start with :func:`advcal.metrics.calibration_report` or the
``advcal`` command.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
