"""The engine layer: the batch → attack → logits → statistics loop, over processes.

:mod:`advcal.engine.passes` is the loop (:func:`~advcal.engine.passes.stream`) and the image
modalities that feed it (a live attack, a stored adversarial set);
:mod:`advcal.engine.text_passes` is the text modality. :mod:`advcal.engine.distributed` shards
data over ``torch.distributed`` ranks and reduces the results exactly (statistics merged in
rank order, arrays moved by tensor collectives, nothing pickled).

Layer (docs/architecture.md; lint-imports holds it): imports only from calibration, clip,
text and the layers below them; never an analysis, the report or the CLI.
"""
