"""Results as data: what every analysis reports, free of torch so that reports can be read,
judged and re-rendered without the machinery that made them (DESIGN: the results layer).

Layer (docs/architecture.md; lint-imports holds it): imports only from the layers below it
(attacks, metrics, data, models, _core); in practice only _core.
"""
