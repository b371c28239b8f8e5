"""advcal.clip: the Dirichlet maths, the zero-shot head, loading local checkpoints, torchvision."""

from __future__ import annotations

import ast
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import advcal._core.torchvision_compat as shim
from advcal.clip import ZeroShotClassifier, load_clip, tiny_clip
from advcal.clip.dirichlet import concentrations, default_kl_weight, dirichlet_kl, dirichlet_uncertainty
from advcal.clip.zeroshot import OPENAI_MEAN, OPENAI_STD
from advcal.errors import ConfigError, InputError
from conftest import require_system_package

# --- the Dirichlet maths (torch only) -------------------------------------------------------------


@pytest.mark.parametrize("classes", [2, 5, 37])
def test_the_closed_form_kl_equals_torch_distributions(classes):
    generator = torch.Generator().manual_seed(classes)
    for scale in (0.3, 5.0, 1e6):  # small, moderate and UCAT-sized concentrations
        p = (torch.rand(16, classes, generator=generator, dtype=torch.float64) + 0.05) * scale
        q = (torch.rand(16, classes, generator=generator, dtype=torch.float64) + 0.05) * scale
        expected = torch.distributions.kl_divergence(torch.distributions.Dirichlet(p),
                                                     torch.distributions.Dirichlet(q))
        assert torch.allclose(dirichlet_kl(p, q), expected, rtol=1e-9, atol=1e-9 * scale)
        assert torch.all(dirichlet_kl(p, p).abs() < 1e-6 * scale)


def test_the_closed_form_kl_matches_a_monte_carlo_estimate():
    p = torch.tensor([[2.0, 3.5, 1.2]], dtype=torch.float64)
    q = torch.tensor([[1.5, 1.0, 4.0]], dtype=torch.float64)
    dp, dq = torch.distributions.Dirichlet(p[0]), torch.distributions.Dirichlet(q[0])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        samples = dp.sample((200_000,))
    ratio = dp.log_prob(samples) - dq.log_prob(samples)  # KL = E_p[log p − log q]
    estimate, error = float(ratio.mean()), float(ratio.std()) / math.sqrt(len(ratio))
    assert abs(float(dirichlet_kl(p, q)[0]) - estimate) < 4 * error


def test_concentrations_are_finite_over_every_cosine_and_so_are_the_kl_gradients():
    scale = torch.tensor(100.0)
    cosine = torch.linspace(-1, 1, 201)
    alpha = concentrations(scale * cosine[None, :], scale)
    assert alpha.dtype == torch.float64 and torch.isfinite(alpha).all() and (alpha > 0).all()
    assert float(alpha.min()) == pytest.approx(1 + 1e-6)
    assert float(alpha.max()) == pytest.approx(math.exp(2 / 0.07))
    for extreme in (-1.0, 1.0):  # every class at the same extreme cosine, against a mixed reference
        logits = torch.full((3, 4), extreme * 100.0, requires_grad=True)
        reference = concentrations(torch.tensor([[100.0, -100.0, 30.0, 0.0]] * 3), scale)
        kl = dirichlet_kl(concentrations(logits, scale), reference).sum()
        (grad,) = torch.autograd.grad(kl, logits)
        assert torch.isfinite(kl) and torch.isfinite(grad).all()


def test_the_default_kl_weight_and_tau_checks():
    assert default_kl_weight(0.07) == pytest.approx(1e5 / math.exp(math.log1p(math.exp(2 / 0.07))))
    assert default_kl_weight(1e-4) == 0.0  # exp(2 / τ′) overflows a float: the weight must not
    for call in (lambda: default_kl_weight(0.0), lambda: concentrations(torch.zeros(1, 2), 100.0, tau=-1.0)):
        with pytest.raises(InputError, match=r"^tau:"):
            call()


def test_the_uncertainties_add_up_and_hit_their_known_values():
    flat = dirichlet_uncertainty(torch.ones(1, 4, dtype=torch.float64))
    # Dir(1, 1, 1, 1): mean uniform, so predictive = log 4; E[H] = ψ(5) − ψ(2) = 1/2 + 1/3 + 1/4.
    assert float(flat.predictive[0]) == pytest.approx(math.log(4))
    assert float(flat.aleatoric[0]) == pytest.approx(1 / 2 + 1 / 3 + 1 / 4)
    assert float(flat.epistemic[0]) == pytest.approx(math.log(4) - 13 / 12)
    assert float(flat.vacuity[0]) == pytest.approx(1.0)
    # Dir(1, 2): p̄ = (1/3, 2/3); E[H] = 1/3 (ψ(4) − ψ(2)) + 2/3 (ψ(4) − ψ(3)) = 1/3 · 5/6 + 2/3 · 1/3 = 1/2.
    small = dirichlet_uncertainty(torch.tensor([[1.0, 2.0]]))
    predictive = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    assert float(small.predictive[0]) == pytest.approx(predictive)
    assert float(small.aleatoric[0]) == pytest.approx(0.5)
    assert float(small.epistemic[0]) == pytest.approx(predictive - 0.5)
    assert float(small.vacuity[0]) == pytest.approx(2 / 3)
    sharp = dirichlet_uncertainty(torch.tensor([[1e6, 1e6, 1e6, 1e6]], dtype=torch.float64))
    assert float(sharp.epistemic[0]) < 1e-5  # all evidence: no epistemic uncertainty is left
    generator = torch.Generator().manual_seed(0)
    alpha = torch.rand(100, 6, generator=generator, dtype=torch.float64) * 20 + 0.1
    found = dirichlet_uncertainty(torch.cat([alpha, concentrations(alpha * 10 - 100, 100.0)]))
    assert (found.epistemic >= 0).all() and (found.aleatoric <= found.predictive + 1e-12).all()
    assert (found.predictive <= math.log(6) + 1e-12).all()
    assert set(found.means()) == {"predictive", "aleatoric", "epistemic", "vacuity"}


# --- the zero-shot head (needs open_clip) ---------------------------------------------------------

CLASSES = ["zero", "one", "two"]
TEMPLATES = ("This is a photo of a {}", "a blurry drawing of the digit {}")


@pytest.fixture(scope="module")
def open_clip():
    """open_clip, or a skip where it is not installed (a failure in CI, which installs it)."""
    require_system_package(importlib.util.find_spec("open_clip") is not None, "open_clip",
                           "pip install open-clip-torch")
    return pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def tiny(open_clip):
    return tiny_clip(seed=0)


def by_hand(open_clip, clip_model, tokenizer, images: torch.Tensor) -> torch.Tensor:
    """CLIP zero-shot logits straight from open_clip: preprocess, encode, normalise, average, scale."""
    x = images.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (16, 16):
        x = torch.nn.functional.interpolate(x, size=(16, 16), mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        image = clip_model.encode_image((x - mean) / std, normalize=True)
        prototypes = []
        for name in CLASSES:
            text = clip_model.encode_text(tokenizer([t.format(name) for t in TEMPLATES]), normalize=True)
            prototypes.append(torch.nn.functional.normalize(text.mean(0), dim=-1))
        return clip_model.logit_scale.exp() * image @ torch.stack(prototypes).T


def test_the_head_gives_the_logits_computed_by_hand(open_clip, tiny):
    clip_model, tokenizer = tiny
    assert (OPENAI_MEAN, OPENAI_STD) == (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    head = ZeroShotClassifier(clip_model, tokenizer, CLASSES, TEMPLATES)
    generator = torch.Generator().manual_seed(0)
    # Grayscale 8×8 (repeated to RGB, resized to 16×16) and RGB at the model's own size.
    grey, rgb = torch.rand(5, 1, 8, 8, generator=generator), torch.rand(4, 3, 16, 16, generator=generator)
    for images in (grey, rgb):
        with torch.no_grad():
            assert torch.allclose(head(images), by_hand(open_clip, clip_model, tokenizer, images), atol=1e-5)
    assert head.classes == CLASSES and float(head.logit_scale) == pytest.approx(1 / 0.07)
    with pytest.raises(InputError, match=r"^x:"):
        head(torch.zeros(2, 2, 16, 16))


def test_only_the_image_tower_trains_and_gradients_reach_the_pixels(tiny):
    head = ZeroShotClassifier(*tiny, CLASSES)
    trainable = {name for name, p in head.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("model.visual.") for name in trainable)
    assert not head.model.logit_scale.requires_grad
    assert any(name.startswith("model.transformer.") for name, _ in head.named_parameters())
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    head(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    head.train()  # a head for another dataset, built mid-training, leaves the shared model training
    other = head.with_classes(["cat", "dog"])
    assert other.model is head.model and other.training and head.model.training
    head.eval()
    assert other(torch.rand(1, 3, 16, 16)).shape == (1, 2)


def test_load_clip_reads_local_checkpoints(tiny, tmp_path):
    clip_model, tokenizer = tiny
    state = {k: v.contiguous() for k, v in clip_model.state_dict().items()}
    save_file(state, str(tmp_path / "tiny.safetensors"))
    torch.save({"state_dict": state}, tmp_path / "tiny.pt")
    (tmp_path / "classes.txt").write_text("zero\n\none\ntwo\n")
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ZeroShotClassifier(clip_model, tokenizer, CLASSES)(images)
    for weights in ("tiny.safetensors", "tiny.pt"):
        loaded = load_clip("advcal-tiny", tmp_path / weights, classes=tmp_path / "classes.txt")
        assert loaded.classes == CLASSES and not loaded.training
        with torch.no_grad():
            assert torch.allclose(loaded(images), expected, atol=1e-6)
    # What advcal train writes: the classifier's own state dict, the CLIP under "model."
    save_file({k: v.contiguous() for k, v in loaded.state_dict().items()}, str(tmp_path / "head.safetensors"))
    again = load_clip("advcal-tiny", tmp_path / "head.safetensors", classes=CLASSES)
    with torch.no_grad():
        assert torch.allclose(again(images), expected, atol=1e-6)


@pytest.mark.parametrize(("arguments", "error", "names"), [
    ({"weights": "missing.safetensors", "classes": CLASSES}, InputError, "weights"),
    ({"weights": "tiny.npz", "classes": CLASSES}, InputError, "weights"),
    ({"classes": "empty.txt"}, InputError, "classes"),
    ({"classes": None}, ConfigError, "classes"),
    ({"classes": ["only"]}, InputError, "classes"),
])
def test_load_clip_errors_name_the_argument(open_clip, arguments, error, names, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "tiny.npz").write_bytes(b"not weights")
    arguments = {k: tmp_path / v if isinstance(v, str) else v for k, v in arguments.items()}
    with pytest.raises(error, match=f"^{names}:"):
        load_clip("advcal-tiny", **arguments)


def test_unknown_or_remote_architectures_are_refused(open_clip):
    typo = r"^arch: unknown open_clip architecture 'ViT-B32' \(did you mean ViT-B-32"
    with pytest.raises(ConfigError, match=typo):
        load_clip("ViT-B32", classes=CLASSES)
    with pytest.raises(ConfigError, match=r"^arch: .*local"):
        load_clip("hf-hub:laion/CLIP-ViT-B-32", classes=CLASSES)


# --- torchvision, and importing advcal.clip without open_clip ------------------------------------


def test_advcal_clip_imports_neither_open_clip_nor_torchvision_at_import_time():
    """Only a function body may import them: ``import advcal.clip`` must work without open_clip."""
    package = Path(shim.__file__).parents[1]
    for path in [Path(shim.__file__), *sorted((package / "clip").glob("*.py"))]:
        for node in ast.parse(path.read_text("utf-8")).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.split(".")[0] in ("open_clip", "torchvision") for n in names), path.name


def test_torchvision_open_clip_and_torchmetrics_import_after_the_shim():
    require_system_package(importlib.util.find_spec("torchvision") is not None, "torchvision",
                           "pip install torchvision")
    shim.ensure_torchvision_importable()
    shim.ensure_torchvision_importable()  # idempotent
    import open_clip
    import torchmetrics
    import torchvision

    assert hasattr(torch.ops.torchvision, "nms")
    assert torchvision.transforms.functional.to_tensor is not None
    assert open_clip.CLIP is not None and torchmetrics.classification.MulticlassCalibrationError is not None


@pytest.mark.parametrize("installed", ["absent", "ops load"])
def test_the_shim_does_nothing_without_torchvision_or_with_a_working_one(installed, monkeypatch):
    monkeypatch.setattr(shim, "_checked", False)
    monkeypatch.setattr(shim, "_declared", None)
    if installed == "absent":
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    else:  # a real install: its compiled library loads
        monkeypatch.setattr(torch.ops, "load_library", lambda path: None)

    def refuse(*args: object) -> None:
        raise AssertionError("the shim declared operators it did not need")

    monkeypatch.setattr(torch.library, "Library", refuse)
    shim.ensure_torchvision_importable()
    assert shim._declared is None and shim._checked
