"""The engine layer: running the batch → attack → logits → statistics work over processes.

:mod:`advcal.engine.distributed` shards data over ``torch.distributed`` ranks and reduces the
results exactly (statistics merged in rank order, arrays moved by tensor collectives, nothing
pickled). It may import ``_core``, ``data``, ``models``, ``attacks``, ``metrics`` and
``calibration``; never an analysis, the report or the CLI.
"""
