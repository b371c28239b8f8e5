"""A zero-shot CLIP classifier: images in [0, 1], logits over class names from prompts.

``logits = s · cos(f(x), t_k)``: ``f`` is CLIP's image encoder after its own preprocessing
(resize to the model's input size, normalise with its mean and std), ``s`` its learned logit
scale, and ``t_k`` the prototype of class ``k`` — the mean of the L2-normalised text embeddings of
the class name in every prompt template, normalised again (Radford et al., 2021). The prototypes
are computed once, so the text encoder is frozen: only the image tower is trainable. The result
is an ordinary advcal model — every attack, metric, calibrator and illusion check applies — and
attacks act on the [0, 1] image before preprocessing (ε in pixel units, DESIGN invariant 7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from advcal._core.errors import InputError, describe

DEFAULT_TEMPLATES = ("This is a photo of a {}",)
# open_clip.constants.OPENAI_DATASET_MEAN / _STD, for models that carry no statistics of their own;
# copied so that this module imports without open_clip (a test checks they agree).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# Prompts encoded per text-encoder call: 1000 classes x 80 templates in one batch would not fit.
TEXT_BATCH = 256


def _check_names(classes: Sequence[str], templates: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    if isinstance(classes, str):  # one string is a sequence too: its characters are no class names
        raise InputError(f"classes: expected a list of class names, got the string {classes!r}")
    names = [str(name).strip() for name in classes]
    if len(names) < 2 or not all(names):
        raise InputError(f"classes: expected at least 2 non-empty class names, got {list(classes)!r}")
    templates = tuple(templates)
    if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise InputError(f"templates: expected prompt templates with {{}} for the name, got {templates!r}")
    return names, templates


class ZeroShotClassifier(nn.Module):
    """CLIP as a classifier over ``classes`` (see the module docstring).

    Args:
        clip_model: an open_clip ``CLIP`` (anything with ``visual``, ``encode_image``,
            ``encode_text`` and ``logit_scale``).
        tokenizer: texts -> token ids (open_clip's tokenizer for the model).
        classes: class names, index -> name.
        templates: prompt templates, each with ``{}`` where the class name goes.
        mean, std: the image normalisation (default: the model's own ``visual.image_mean`` /
            ``image_std``, which open_clip sets from the architecture's config, else OpenAI CLIP's
            ``OPENAI_DATASET_MEAN`` / ``OPENAI_DATASET_STD``).

    Every parameter outside ``clip_model.visual`` (the text tower, the logit scale) has its
    gradient turned off: the prototypes are computed once, so training the text tower would
    change nothing, and fine-tuning trains the image tower alone, as UCAT, TeCoA and FARE do.
    The head takes the CLIP model's train/eval mode and leaves it as it was.
    """

    def __init__(
        self,
        clip_model: nn.Module,
        tokenizer: Callable[[list[str]], torch.Tensor],
        classes: Sequence[str],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.classes, self.templates = _check_names(classes, templates)
        self.model = clip_model
        self.tokenizer = tokenizer
        for name, parameter in clip_model.named_parameters():
            if not name.startswith("visual."):
                parameter.requires_grad_(False)
        visual = clip_model.visual
        size = getattr(visual, "image_size", 224)
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        mean = mean if mean is not None else getattr(visual, "image_mean", None) or OPENAI_MEAN
        std = std if std is not None else getattr(visual, "image_std", None) or OPENAI_STD
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("prototypes", self._prototypes())
        # nn.Module starts in train mode; follow the CLIP model instead of switching it (a head for
        # another dataset built mid-training must not put the shared model in eval mode).
        self.training = clip_model.training

    @torch.no_grad()
    def _prototypes(self) -> torch.Tensor:
        """(classes, dim): per class, the mean of its normalised prompt embeddings, normalised."""
        prompts = [template.format(name) for name in self.classes for template in self.templates]
        device = next(self.model.parameters()).device
        training = self.model.training
        self.model.eval()  # deterministic prototypes, whatever dropout the text tower has
        try:
            tokens = self.tokenizer(prompts).to(device)
            parts = tokens.split(TEXT_BATCH)
            embeddings = torch.cat([self.model.encode_text(part).float() for part in parts])
        finally:
            self.model.train(training)
        embeddings = nn.functional.normalize(embeddings, dim=-1)
        embeddings = embeddings.view(len(self.classes), len(self.templates), -1)
        return nn.functional.normalize(embeddings.mean(1), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        """``s``, the multiplier of the cosines (``exp`` of open_clip's stored log scale)."""
        return self.model.logit_scale.exp()

    def with_classes(
        self, classes: Sequence[str], templates: Sequence[str] | None = None
    ) -> ZeroShotClassifier:
        """A head over other class names on the same CLIP model (shared, not copied)."""
        return ZeroShotClassifier(self.model, self.tokenizer, classes, templates or self.templates,
                                  mean=self.mean.flatten().tolist(), std=self.std.flatten().tolist())

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images (N, 1 or 3, H, W) as the image encoder expects them (differentiable)."""
        if (not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4
                or x.shape[1] not in (1, 3)):
            raise InputError(f"x: expected float images (N, 1 or 3, H, W) in [0, 1], got {describe(x)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grayscale as RGB: CLIP's encoder takes 3 channels
        if tuple(x.shape[-2:]) != self.image_size:
            x = nn.functional.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False,
                                          antialias=False)
            x = x.clamp(0.0, 1.0)  # bicubic overshoots beside sharp edges; CLIP saw [0, 1] images
        return (x - self.mean) / self.std

    def encode_image(self, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """The image embeddings of [0, 1] images, L2-normalised unless ``normalize=False``."""
        features = self.model.encode_image(self.preprocess(x)).float()
        return nn.functional.normalize(features, dim=-1) if normalize else features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``s · cos(image, prototype)`` (N, classes)."""
        return self.logit_scale * self.encode_image(x) @ self.prototypes.T
