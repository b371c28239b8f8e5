"""The training report: metrics against epoch, clean and adversarial, as one self-contained page.

Written after every epoch next to ``log.csv`` (``training-report.html``), and mirrored to
TensorBoard when the ``tensorboard`` package is installed.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING

from advcal._core.atomic import write_bytes_atomic

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

PANELS = (("accuracy", "Accuracy"), ("ece", "ECE (15 bins)"), ("nll", "NLL"), ("brier", "Brier"))
WHERE = (("clean", "clean"), ("adv", "fresh PGD"), ("frozen", "frozen adversarial set"))


def write_training_report(path: Path, log: list[dict[str, float]], settings: dict[str, object]) -> Path:
    """Write the HTML page of a run's log (figures inline as PNG, no external resource)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [int(row["epoch"]) + 1 for row in log]
    figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2), dpi=100)
    for axis, (metric, title) in zip(axes, PANELS, strict=True):
        for where, label in WHERE:
            values = [row[f"{where}_{metric}"] for row in log]
            axis.plot(epochs, values, marker="o", markersize=3, label=label)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    recipe = settings.get("recipe", {})
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(row[key])}</td>" for key in ("epoch", "train_loss", "clean_accuracy",
                                                                   "clean_ece", "adv_accuracy", "adv_ece",
                                                                   "frozen_accuracy", "frozen_ece"))
        + "</tr>" for row in log)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>advcal training report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}td,th{{padding:.2em .6em;text-align:right}}
th{{border-bottom:1px solid #999}}code{{background:#f4f4f4}}</style></head><body>
<h1>Training report: {html.escape(str(recipe.get("name", "")))}</h1>
<p>Calibration on a fixed validation subset after every epoch: on clean inputs, under a fresh PGD
attack (new per-sample seeds each epoch), and on a frozen adversarial set crafted once at the start.</p>
<p><code>{html.escape(str(settings))}</code></p>
<img alt="accuracy, ECE, NLL and Brier against epoch, clean and adversarial"
 src="data:image/png;base64,{image}">
<table><thead><tr><th>epoch</th><th>train loss</th><th>clean acc</th><th>clean ECE</th><th>adv acc</th>
<th>adv ECE</th><th>frozen acc</th><th>frozen ECE</th></tr></thead><tbody>{rows}</tbody></table>
</body></html>
"""
    return write_bytes_atomic(path, page.encode("utf-8"))


def _cell(value: float) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def tensorboard_writer(folder: Path) -> SummaryWriter | None:
    """A TensorBoard ``SummaryWriter`` logging into ``folder/tensorboard``, or None when the
    ``tensorboard`` package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(folder / "tensorboard"))
