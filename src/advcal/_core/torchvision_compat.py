"""Importing torchvision where its compiled operators cannot load.

torchvision's wheels are built against one torch release; beside another (here, the CPU build
of torch 2.13 next to the registry's torchvision 0.28), loading ``torchvision/_C.so`` fails and
``import torchvision`` then dies registering fake kernels for operators that were never declared
("operator torchvision::nms does not exist"). open_clip, transformers and torchmetrics all import
torchvision when it is installed, so they die with it.

advcal needs none of those operators (detection boxes, RoI pooling, deformable convolutions), only
the Python parts (transforms, datasets). :func:`ensure_torchvision_importable` declares the
operators' schemas — without kernels — when and only when the library cannot load, so the import
succeeds and calling one of them fails with a clear "no kernel" error. With a working
torchvision, or none, it does nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

# The operators torchvision 0.28 declares in C++ and refers to from Python at import time.
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
    "-> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
    "-> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, "
    "SymInt width) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, "
    "SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, "
    "SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, "
    "Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
    "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)

# The declarations live as long as this library object: keep it for the life of the process.
_declared: torch.library.Library | None = None
_checked = False


def _operators_load() -> bool:
    """Whether torchvision is absent or its compiled operators load beside this torch."""
    try:
        spec = importlib.util.find_spec("torchvision")
    except ValueError:  # a stand-in module without a spec (tests) is not a real install to repair
        return True
    if spec is None or spec.origin is None:
        return True
    folder = Path(spec.origin).parent
    libraries = sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd"))
    if not libraries:
        return True
    try:
        torch.ops.load_library(str(libraries[0]))
    except OSError:
        return False
    return True


def ensure_torchvision_importable() -> None:
    """Make ``import torchvision`` work where its compiled operators cannot load (idempotent).

    Call it before anything imports torchvision (open_clip, transformers, torchmetrics do). The
    check runs once per process; with torchvision absent, or loading fine, it declares nothing.
    """
    global _checked, _declared
    if _checked:
        return
    _checked = True
    if _operators_load():
        return
    # A fragment, and only the operators nobody declared yet: other code may have done the same
    # (a second "DEF" library of the namespace would be refused).
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS:
        if not hasattr(torch.ops.torchvision, schema.split("(", 1)[0]):
            library.define(schema)
    _declared = library
