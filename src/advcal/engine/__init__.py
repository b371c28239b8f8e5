"""The engine layer: running the batch → attack → logits → statistics work over processes.

:mod:`advcal.engine.distributed` shards data over ``torch.distributed`` ranks and reduces the
results exactly (statistics merged in rank order, arrays moved by tensor collectives, nothing
pickled). It may import ``results``, ``attacks``, ``metrics``, ``data``, ``models`` and
``_core``; never a calibrator, an analysis, the report or the CLI (lint-imports holds it).

Layer (docs/architecture.md; lint-imports holds it): imports only from calibration, clip,
text and the layers below them.
"""
