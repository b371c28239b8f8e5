"""``folder:PATH``: image files in one sub-folder per class, read with Pillow.

The sorted sub-folder names are the classes. Hidden entries (names starting with ".") and plain
files directly in PATH (a README, say) are ignored; anything else in a class folder must be an
image. All images are converted to one mode — RGB if any image is in colour, else greyscale
(alpha is dropped) — and must share one size: nothing is resized, because resizing silently
changes what a model and an attack see.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from advcal._core.errors import InputError, MissingDependencyError
from advcal.data.base import RawData, SourceKind

if TYPE_CHECKING:
    from PIL.Image import Image

# 8-bit modes Pillow converts to "L" or "RGB" without rescaling. 16-bit and float modes would
# be clipped, not scaled, by that conversion, so they are refused rather than mangled.
GREY_MODES = {"1", "L", "LA", "La"}
COLOUR_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
PALETTE_MODES = {"P", "PA"}


def _image_module() -> ModuleType:
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError(
            "folder: reading images needs Pillow, which comes with matplotlib; pip install pillow"
        ) from None
    return Image


def _listing(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, label) for every file in the class folders in sorted order, and the class names."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise InputError(
            f"folder: {root} has no class sub-folders; expected one sub-folder of images per class"
        )
    listing = []
    for label, class_dir in enumerate(class_dirs):
        entries = sorted(p for p in class_dir.iterdir() if not p.name.startswith("."))
        for entry in entries:
            if entry.is_dir():
                raise InputError(
                    f"folder: {entry} is a folder inside the class folder {class_dir.name}; "
                    "expected only image files there (classes are not nested)"
                )
        if not entries:
            raise InputError(f"folder: class folder {class_dir} holds no images")
        listing.extend((entry, label) for entry in entries)
    return listing, [d.name for d in class_dirs]


def _is_colour(image: Image) -> bool:
    if image.mode in GREY_MODES:
        return False
    if image.mode in COLOUR_MODES:
        return True
    if image.mode in PALETTE_MODES:  # colour only if some palette entry in use is not grey
        rgb = np.asarray(image.convert("RGB"))
        return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())
    raise InputError(
        f"folder: {image.filename} has image mode {image.mode!r}; expected an 8-bit greyscale, "
        "palette or colour image (16-bit and float images are not rescaled: convert them to 8 bits)"
    )


def _open(image_module: ModuleType, path: Path, *, decode: bool = True) -> Image:
    """The image at ``path``; decoded now (unless only its header is wanted) so that a truncated
    file fails here, with its name."""
    try:
        image = image_module.open(path)  # reads the header: size and mode
        if decode or image.mode in PALETTE_MODES:  # a palette image's colours are in its pixels
            image.load()
    except (OSError, SyntaxError, ValueError) as error:  # UnidentifiedImageError is an OSError
        raise InputError(f"folder: {path} is not an image Pillow can read: {error}") from None
    return image


def load(argument: str | None, part: str) -> RawData:
    """Every image of the folder ``argument`` as uint8 (N, C, H, W), with labels by sub-folder."""
    root = Path(argument or "").expanduser()
    if not root.is_dir():
        raise InputError(f"folder: directory {root} does not exist")
    image_module = _image_module()
    listing, classes = _listing(root)
    # First pass, over headers: check sizes and settle the common mode before decoding anything.
    first_path, first_size, colour = None, None, False
    for path, _ in listing:
        with _open(image_module, path, decode=False) as image:
            if first_size is None:
                first_path, first_size = path, image.size
            elif image.size != first_size:
                raise InputError(
                    f"folder: {path} is {image.size[0]}x{image.size[1]} but {first_path} is "
                    f"{first_size[0]}x{first_size[1]} (width x height); all images must share one size "
                    "(advcal does not resize)"
                )
            colour = colour or _is_colour(image)
    mode, channels = ("RGB", 3) if colour else ("L", 1)
    width, height = first_size
    x = np.empty((len(listing), channels, height, width), dtype=np.uint8)
    for i, (path, _) in enumerate(listing):
        with _open(image_module, path) as image:
            pixels = np.asarray(image.convert(mode))
        x[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    y = np.array([label for _, label in listing], dtype=np.int64)
    return RawData(x, y, classes, str(root))


KIND = SourceKind(name="folder", usage="folder:PATH", official_test=False, argument="required", load=load,
                  own_data=True)
