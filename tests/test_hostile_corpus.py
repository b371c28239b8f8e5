"""The hostile-input corpus: hundreds of bad command lines, one case per row, each run through the
real command (in-process, ``advcal.cli.main``, for speed; one row of each class also in a
subprocess, as a user runs it). Every case must end with exit status 2 and one line naming the
argument, no traceback, and nothing written. The rows are grouped by class; add to them.

Placeholders in a row's arguments are files the module writes (see :func:`files`): ``OUT`` is a
fresh output path, ``FILE`` an existing file, ``DIR`` an existing folder, others are named below.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file

from advcal.cli import main
from advcal.models import DigitsCNN
from conftest import advcal_cli, one_line_error

COMMANDS = {  # the smallest valid command line of each, to which a row adds its bad option
    "audit": ["audit", "--limit", "20", "--steps", "1", "--bootstrap", "0", "--out", "@OUT"],
    "attack": ["attack", "--limit", "20", "--steps", "1", "--out", "@OUT"],
    "calibrate": ["calibrate", "--limit", "40", "--steps", "1", "--out", "@OUT"],
    "illusion": ["illusion", "--limit", "40", "--steps", "1"],
    "train": ["train", "--epochs", "1", "--val-limit", "20", "--out", "@OUT"],
    "metrics": ["metrics", "@SCORES.npz"],
    "zeroshot": ["zeroshot", "--model", "clip:advcal-tiny", "--weights", "@CLIP.safetensors",
                 "--suite", "@SUITE",
                 "--steps", "1", "--out", "@OUT"],
}
IMAGE_COMMANDS = ("audit", "attack", "calibrate", "illusion")

# Numbers out of range and malformed: (commands, option, bad values). Typer refuses what is not a
# number ("Invalid value for '--limit'"); advcal refuses the rest ("limit: expected ...").
NUMBERS = [
    (IMAGE_COMMANDS, "--limit", ["0", "-5", "abc", "1.5", ""]),
    (IMAGE_COMMANDS, "--steps", ["0", "-1", "x"]),
    (IMAGE_COMMANDS, "--seed", ["-1", str(2**63), "99999999999999999999", "1e3"]),
    (IMAGE_COMMANDS, "--batch-size", ["0", "-1", "many"]),
    (IMAGE_COMMANDS, "--eps", ["inf", "nan", "-0.1", "abc", "0.1,,0.2", "1/0", "-inf", "0.1;0.2"]),
    (("audit",), "--bins", ["0", "-3", "1000000000", "ten"]),
    (("audit",), "--bootstrap", ["-1", "100000000000", "lots"]),
    (("audit", "calibrate", "illusion"), "--queries", ["0", "-1"]),
    (("attack",), "--shard-size", ["0", "-1", "big"]),
    (("train",), "--epochs", ["0", "-1", "1.5"]),
    (("train",), "--batch-size", ["0", "-2"]),
    (("train",), "--val-limit", ["0", "-1"]),
    (("train",), "--lr", ["inf", "nan", "-1", "0", "-inf", "fast"]),
    (("train",), "--eps", ["inf", "nan", "-0.1", "abc"]),
    (("train",), "--steps", ["0", "-1"]),
    (("train",), "--alpha", ["inf", "nan", "-1", "zz"]),
    (("train",), "--trades-beta", ["inf", "nan", "-1"]),
    (("train",), "--train-temperature", ["inf", "nan", "0", "-1"]),
    (("train",), "--freeze-bn-last", ["inf", "nan", "-0.5", "1.5"]),
    (("train",), "--eps-warmup", ["inf", "nan", "-1", "1.5"]),
    (("train",), "--warmup-epochs", ["inf", "nan", "-1"]),
    (("train",), "--kl-weight", ["inf", "nan", "-1"]),
    (("train",), "--dirichlet-tau", ["inf", "nan", "0", "-1"]),
    (("train",), "--seed", ["-1", str(2**63)]),
    (("metrics",), "--n-bins", ["0", "-1", "1000000000", "x"]),
    (("metrics",), "--bootstrap", ["-1", "100000000000"]),
    (("metrics",), "--seed", ["-1", str(2**64)]),
    (("zeroshot",), "--eps", ["inf", "nan", "0", "2", "-1/255"]),
    (("zeroshot",), "--steps", ["0", "-1"]),
    (("zeroshot",), "--limit", ["0", "-1"]),
    (("zeroshot",), "--batch-size", ["0"]),
    (("zeroshot",), "--seed", ["-1", str(2**63)]),
]

# Names nobody registered: (commands, option, bad values).
NAMES = [
    (IMAGE_COMMANDS, "--attack", ["nope", "pgd-l3", ""]),
    (IMAGE_COMMANDS, "--model", ["nope", "resnet9000", "nope.module:build"]),
    (IMAGE_COMMANDS, "--data", ["nope", "npz:", "cifar10:", "folder:"]),
    (IMAGE_COMMANDS, "--device", ["cuda", "nope", "cuda:7"]),
    (IMAGE_COMMANDS, "--normalize", ["1,2,3", "0.5,0", "a,b", "0.5"]),
    (("audit", "illusion"), "--fail-on", ["nope", "errors"]),
    (("audit",), "--profile", ["nope"]),
    (("audit", "attack"), "--split", ["nope"]),
    (("attack",), "--compress", ["nope", "gzip"]),
    (("calibrate",), "--calibrators", ["nope", "temperature,nope", ""]),
    (("calibrate",), "--fit-on", ["nope", "clean,nope"]),
    (("calibrate", "illusion"), "--calibration-split", ["nope"]),
    (("train",), "--recipe", ["nope", "PGD-AT"]),
    (("train",), "--optimizer", ["nope"]),
    (("train",), "--schedule", ["nope"]),
    (("train",), "--model", ["nope"]),
    (("train",), "--data", ["nope"]),
    (("train",), "--frozen-from", ["nope"]),
    (("zeroshot",), "--attacks", ["nope", "pgd,nope", "fgsm"]),
    (("zeroshot",), "--model", ["clip:nope", "digits-cnn"]),
    (("zeroshot",), "--datasets", ["nope", "cifar10,dtd"]),
    (("zeroshot",), "--spec", ["noequals", "x=nope"]),
]

# Files that cannot be read, given where a file is expected: (commands, option, placeholders).
WEIGHTS = ["@MISSING.safetensors", "@EMPTY.safetensors", "@RANDOM.safetensors", "@PICKLE.safetensors",
           "@TRUNCATED.safetensors", "@EVIL.pt", "@RANDOM.pt", "@LIST.pt", "@NONTENSOR.pt", "@EMPTY.pt",
           "@WRONGKEYS.safetensors", "@WRONGSHAPE.safetensors", "@NAN.safetensors", "@DIR", "@FILE"]
NPZ_DATA = ["npz:@EMPTY.npz", "npz:@STRINGS.npz", "npz:@OBJECTS.npz", "npz:@COMPLEX.npz", "npz:@NAN.npz",
            "npz:@NOY.npz", "npz:@YBIG.npz", "npz:@YNEG.npz", "npz:@YFLOAT.npz", "npz:@MISMATCH.npz",
            "npz:@FLAT.npz", "npz:@RANGE.npz", "npz:@MISSING.npz", "npz:@DIR", "npz:@ONECLASS.npz",
            "npz:@HUGELABEL.npz", "npz:@RANDOM.npz", "npz:@NOSAMPLES.npz"]
FILES = [
    (("audit", "attack", "calibrate", "illusion"), "--weights", WEIGHTS),
    (("audit", "attack"), "--data", NPZ_DATA),
    (("metrics",), "FILE_ARGUMENT", ["@MISSING.npz", "@EMPTY.npz", "@STRINGS.npz", "@COMPLEX.npz",
                                     "@RANDOM.npz", "@NOSCORES.npz", "@NANSCORES.npz", "@NOTPROBS.npz",
                                     "@SCORES1D.npz",
                                     "@SCORESMISMATCH.npz", "@YBIG.npz", "@RANDOM.safetensors", "@DIR",
                                     "@PICKLE.safetensors"]),
    (("audit",), "--adv-set", ["@MISSING", "@FILE", "@DIR", "@NOMANIFEST", "@BADJSON_SET", "@LISTJSON",
                               "@TRAVERSAL", "@SHARDGONE", "@SHARDHASH", "@COUNTS"]),
    (("audit",), "--calibrator", ["@MISSING.json", "@FILE", "@BADJSON", "@LISTJSON", "@DIR"]),
    (("audit",), "--classes", ["@MISSING.txt", "@EMPTYTEXT.txt", "@DIR"]),
    (("zeroshot",), "--weights", ["@MISSING.safetensors", "@RANDOM.safetensors", "@EVIL.pt", "@DIR"]),
    (("zeroshot",), "--templates", ["@MISSING.txt", "@EMPTYTEXT.txt", "@DIR"]),
    (("zeroshot",), "--suite", ["@MISSING", "@FILE", "@EMPTYDIR"]),
]

# Where outputs cannot go: (commands, option, placeholders).
OUTPUTS = [
    (("audit", "attack", "calibrate", "train", "zeroshot"), "--out", ["@FILE", "@FILE/sub"]),
    (("calibrate", "illusion", "metrics"), "--json", ["@DIR", "@FILE/x.json"]),
]

# Models that misbehave, from a Python file the user wrote: (commands, factories).
MODELS = [
    (IMAGE_COMMANDS, ["raises", "needs_args", "not_module", "forward", "shape", "nograph", "nan",
                      "int_", "tuple_", "missing_factory", "constant", "late"]),
    (("train",), ["raises", "needs_args", "not_module", "forward", "shape", "nan", "late"]),
    (("audit", "illusion"), ["backward"]),
    (("audit", "attack"), ["syntax", "importfail"]),
]


def _rows() -> list[tuple[str, list[str], str]]:
    """(class, argument list, the argument the one line must name)."""
    rows = []
    for group, table in (("numbers", NUMBERS), ("names", NAMES)):
        for commands, option, values in table:
            for command in commands:
                rows += [(group, [*COMMANDS[command], option, value], option) for value in values]
    for commands, option, values in FILES:
        for command in commands:
            for value in values:
                base = COMMANDS[command]
                if option == "FILE_ARGUMENT":
                    rows.append(("files", [command, value], "file"))
                elif option == "--data":
                    rows.append(("files", [*base, "--data", value], "data"))
                else:
                    rows.append(("files", [*base, option, value], option))
    for commands, option, values in OUTPUTS:
        for command in commands:
            base = [part for part in COMMANDS[command]]
            if option == "--out" and "--out" in base:
                where = base.index("--out")
                del base[where:where + 2]
            rows += [("outputs", [*base, option, value], option) for value in values]
    for commands, factories in MODELS:
        for command in commands:
            for factory in factories:
                file = {"syntax": "@SYNTAX.py:build", "importfail": "@IMPORTFAIL.py:build"}.get(
                    factory, f"@BAD_MODELS.py:{factory}")
                rows.append(("models", [*COMMANDS[command], "--model", file], "model"))
    return rows


ROWS = _rows()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The files the rows name, written once in the real formats."""
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    (root / "FILE").write_text("the user's file")
    (root / "DIR").mkdir()
    (root / "EMPTYDIR").mkdir()
    (root / "EMPTYTEXT.txt").write_text("")
    x = rng.random((30, 1, 8, 8)).astype(np.float32)
    y = np.arange(30) % 10
    (root / "EMPTY.npz").write_bytes(b"")
    (root / "RANDOM.npz").write_bytes(rng.bytes(300))
    np.savez(root / "STRINGS.npz", x=np.array(["a", "b"]), y=np.array([0, 1]))
    np.savez(root / "OBJECTS.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    np.savez(root / "COMPLEX.npz", x=x.astype(np.complex64), y=y)
    np.savez(root / "NAN.npz", x=np.where(x > 0.5, np.nan, x), y=y)
    np.savez(root / "NOY.npz", x=x)
    np.savez(root / "YBIG.npz", x=x, y=np.full(30, 2**40))
    np.savez(root / "HUGELABEL.npz", x=x, y=np.append(y[:-1], 10**7))
    np.savez(root / "YNEG.npz", x=x, y=-y - 1)
    np.savez(root / "YFLOAT.npz", x=x, y=y + 0.5)
    np.savez(root / "MISMATCH.npz", x=x, y=y[:20])
    np.savez(root / "FLAT.npz", x=x.reshape(30, 64), y=y)
    np.savez(root / "RANGE.npz", x=x * 255, y=y)
    np.savez(root / "ONECLASS.npz", x=x, y=np.zeros(30, np.int64))
    np.savez(root / "NOSAMPLES.npz", x=x[:0], y=y[:0])
    probs = rng.dirichlet(np.ones(10), 50)
    labels = rng.integers(0, 10, 50)
    np.savez(root / "SCORES.npz", probs=probs, labels=labels)
    np.savez(root / "NOSCORES.npz", labels=labels)
    np.savez(root / "NANSCORES.npz", probs=np.where(probs > 0.3, np.nan, probs), labels=labels)
    np.savez(root / "NOTPROBS.npz", probs=probs * 3, labels=labels)
    np.savez(root / "SCORES1D.npz", probs=probs[:, 0], labels=labels)
    np.savez(root / "SCORESMISMATCH.npz", probs=probs, labels=labels[:40])
    (root / "EMPTY.safetensors").write_bytes(b"")
    (root / "RANDOM.safetensors").write_bytes(rng.bytes(500))
    (root / "PICKLE.safetensors").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    model = DigitsCNN()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(root / "GOOD.safetensors"))
    (root / "TRUNCATED.safetensors").write_bytes((root / "GOOD.safetensors").read_bytes()[:200])
    save_file({"other.weight": torch.zeros(3)}, str(root / "WRONGKEYS.safetensors"))
    save_file({k: torch.zeros(2, *v.shape) for k, v in state.items()}, str(root / "WRONGSHAPE.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()},
              str(root / "NAN.safetensors"))
    save_numpy({"x": np.zeros(3)}, str(root / "NUMPY.safetensors"))

    class Evil:  # what a hostile .pt holds: loading it with pickle would run a command
        def __reduce__(self):
            return (print, ("pickle code ran",))

    torch.save({"weight": Evil()}, root / "EVIL.pt")
    (root / "RANDOM.pt").write_bytes(rng.bytes(400))
    torch.save([torch.zeros(2)], root / "LIST.pt")
    torch.save({"weight": "a string"}, root / "NONTENSOR.pt")
    (root / "EMPTY.pt").write_bytes(b"")
    (root / "BAD_MODELS.py").write_text(BAD_MODELS)
    (root / "SYNTAX.py").write_text("def build(:\n    pass\n")
    (root / "IMPORTFAIL.py").write_text("import a_module_nobody_has\ndef build():\n    pass\n")
    (root / "BADJSON").write_text("{not json")
    (root / "LISTJSON").write_text("[1, 2]")
    _stored_sets(root)
    _clip_files(root)
    return root


BAD_MODELS = '''
import torch
from torch import nn


class Linear(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.layer, self.how = nn.Linear(64, 10), how

    def forward(self, x):
        self.calls = getattr(self, "calls", 0) + 1
        if self.how == "late" and self.calls == 6:  # past the first-batch check, in the real work
            raise RuntimeError("an illegal memory access was encountered")
        if self.how == "forward":
            raise ValueError("forward broke")
        if self.how == "backward" and x.requires_grad:
            raise RuntimeError("no gradient for you")
        logits = self.layer(x.flatten(1))
        if self.how == "constant":
            return torch.zeros_like(logits) + self.layer.bias * 0
        return {"shape": lambda: logits[:, :, None], "nograph": logits.detach,
                "nan": lambda: logits * float("nan"), "int_": logits.long,
                "tuple_": lambda: (logits,)}.get(self.how, lambda: logits)()


def raises():
    raise RuntimeError("the factory broke")


def needs_args(width):
    return Linear("ok")


def not_module():
    return 42


for _how in ("forward", "shape", "nograph", "nan", "int_", "tuple_", "backward", "constant", "late"):
    globals()[_how] = (lambda how: lambda: Linear(how))(_how)
'''


def _stored_sets(root: Path) -> None:
    """A real stored adversarial set, and tampered copies of it."""
    code = _run(["attack", "--limit", "20", "--steps", "1", "--shard-size", "8", "--out", str(root / "SET")])
    assert code == 0
    for name in ("NOMANIFEST", "BADJSON_SET", "TRAVERSAL", "SHARDGONE", "SHARDHASH", "COUNTS"):
        shutil.copytree(root / "SET", root / name)
    (root / "NOMANIFEST" / "manifest.json").unlink()
    (root / "BADJSON_SET" / "manifest.json").write_text("{")
    manifest = json.loads((root / "SET" / "manifest.json").read_text())
    first = manifest["shards"][0]["file"]
    (root / "SHARDGONE" / first).unlink()
    (root / "SHARDHASH" / first).write_bytes((root / "SET" / manifest["shards"][1]["file"]).read_bytes())
    for name, change in (("TRAVERSAL", lambda m: m["shards"][0].update(file="../" + first)),
                         ("COUNTS", lambda m: m["recipe"]["data"].update(n_samples=21))):
        edited = json.loads(json.dumps(manifest))
        change(edited)
        (root / name / "manifest.json").write_text(json.dumps(edited))
    shutil.copy(root / "SET" / first, root / first)  # what the traversal points at


def _clip_files(root: Path) -> None:
    from PIL import Image

    from advcal.clip import tiny_clip

    clip_model, _ = tiny_clip(seed=0)
    save_file({k: v.contiguous() for k, v in clip_model.state_dict().items()}, str(root / "CLIP.safetensors"))
    for label in ("cat", "dog"):
        folder = root / "SUITE" / "cifar10" / label
        folder.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.full((16, 16, 3), 40 * k, np.uint8)).save(folder / f"{k}.png")


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as done:
        return done.code
    raise AssertionError("main returned without exiting")


def _resolve(args: list[str], root: Path, out: Path) -> list[str]:
    """The row's arguments with @OUT as ``out`` and every other @NAME as ``root / NAME``."""
    def path(match: re.Match) -> str:
        return str(out if match.group(1) == "OUT" else root / match.group(1))

    return [re.sub(r"@([A-Za-z0-9_.]+)", path, part) for part in args]


def _id(row: tuple[str, list[str], str]) -> str:
    group, args, _ = row
    return f"{group}: {args[0]} {' '.join(args[len(COMMANDS.get(args[0], [])):]) or ' '.join(args[1:])}"


@pytest.mark.parametrize(("group", "args", "argument"), ROWS, ids=[_id(r) for r in ROWS])
def test_a_hostile_command_line_is_one_line_and_exit_2(files, tmp_path, capsys, group, args, argument):
    out = tmp_path / "out"
    before = sorted(p.name for p in files.iterdir())
    resolved = _resolve(args, files, out)
    code = _run(resolved)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err or captured.out
    line = lines[0]
    assert line.startswith("advcal: error: "), line
    assert names_the_argument(line, argument, resolved[-1]), line
    assert "pickle code ran" not in captured.out + captured.err
    if args[-1].endswith(":late") and args[0] in ("attack", "train"):
        # failed in the middle of the work: what it finished is kept, whole, for a resume
        manifest = out / "manifest.json"
        assert not (out / "model.safetensors").exists()  # train: no final model
        assert not manifest.exists() or not json.loads(manifest.read_text())["complete"]  # attack
    else:
        assert not out.exists()  # nothing written
    assert sorted(p.name for p in files.iterdir()) == before


def names_the_argument(line: str, argument: str, value: str) -> bool:
    """Whether ``line`` names the option (as typed, or as its field name) or the file given."""
    name = argument.lstrip("-")
    path = value.partition(":")[2] if value.startswith("npz:") else value
    return any(form in line for form in (name, name.replace("-", "_"))) or (len(path) > 8 and path in line)


# One row of each class, as a user runs it: a subprocess, its stderr, its exit status.
SUBPROCESS_ROWS = [next(row for row in ROWS if row[0] == group)
                   for group in ("numbers", "names", "files", "outputs", "models")]


@pytest.mark.parametrize(("group", "args", "argument"), SUBPROCESS_ROWS,
                         ids=[_id(r) for r in SUBPROCESS_ROWS])
def test_a_hostile_command_line_in_a_subprocess(files, tmp_path, group, args, argument):
    resolved = _resolve(args, files, tmp_path / "out")
    line = one_line_error(advcal_cli(*resolved))
    assert names_the_argument(line, argument, resolved[-1]), line
    assert not (tmp_path / "out").exists()


def test_the_corpus_is_big_enough():
    assert len(ROWS) + len(API_ROWS) >= 300, len(ROWS)


# ----------------------------------------------------------------------------- the API, in-process
def _model() -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return DigitsCNN().eval()


def _meta_model() -> torch.nn.Module:
    with torch.device("meta"):
        return DigitsCNN()


def _split_model() -> torch.nn.Module:
    model = _model()
    model.register_buffer("stray", torch.zeros(1, device="meta"))
    return model


X, Y = torch.rand(6, 1, 8, 8), torch.arange(6)


def _attack(name: str, **options: object):
    from advcal.attacks import get_attack

    return get_attack(name, **options)


def _stats_update(scores, labels, index=None, first=None):
    """A CalibrationStats that took ``first`` (scores, labels, index) and now gets this batch."""
    from advcal.metrics import CalibrationStats

    stats = CalibrationStats(n_bins=10, bootstrap=5, seed=0)
    if first is not None:
        stats.update(*first)
    stats.update(scores, labels, index)


def _report(**options):
    from advcal.metrics import calibration_report

    probs = torch.softmax(torch.randn(20, 4, generator=torch.Generator().manual_seed(0)), 1)
    arguments = {"scores": probs, "labels": torch.arange(20) % 4, "inputs": "probs", **options}
    return calibration_report(arguments.pop("scores"), arguments.pop("labels"), **arguments)


def _audit(**options):
    from advcal import audit
    from advcal.data import load_data

    arguments = {"models": {"net": _model()}, "data": load_data("digits", limit=20), "epsilons": [0.05],
                 "attack_params": {"steps": 1}, "bootstrap": 0, **options}
    return audit(arguments.pop("models"), arguments.pop("data"), arguments.pop("epsilons"), **arguments)


def _fit(calibrator: str, logits, labels):
    from advcal.calibration import CALIBRATORS

    return CALIBRATORS[calibrator]().fit(logits, labels)


GOOD_LOGITS = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))  # logits
API_ROWS = [  # (what, the call, the argument its error must name)
    ("pgd at eps inf", lambda: _attack("pgd", eps=float("inf")), "eps"),
    ("pgd at eps nan", lambda: _attack("pgd", eps=float("nan")), "eps"),
    ("pgd at eps -0.1", lambda: _attack("pgd", eps=-0.1), "eps"),
    ("pgd with 0 steps", lambda: _attack("pgd", eps=0.1, steps=0), "steps"),
    ("pgd with seed 2**63", lambda: _attack("pgd", eps=0.1, seed=2**63), "seed"),
    ("pgd with seed -1", lambda: _attack("pgd", eps=0.1, seed=-1), "seed"),
    ("pgd with an unknown loss", lambda: _attack("pgd", eps=0.1, loss="nope"), "loss"),
    ("pgd with loss temperature 0", lambda: _attack("pgd", eps=0.1, loss_temperature=0.0),
     "loss_temperature"),
    ("pgd with loss temperature inf", lambda: _attack("pgd", eps=0.1, loss_temperature=float("inf")),
     "loss_temperature"),
    ("an unknown attack", lambda: _attack("pgd-l3", eps=0.1), "attack"),
    ("square with 0 queries", lambda: _attack("square", eps=0.1, queries=0), "queries"),
    ("apgd with 0 steps", lambda: _attack("apgd-ce", eps=0.1, steps=0), "steps"),
    ("x on the meta device", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), X.to("meta"), Y), "x"),
    ("a model on the meta device", lambda: _attack("pgd", eps=0.1, steps=1)(_meta_model(), X, Y), "model"),
    ("a model on two devices", lambda: _attack("pgd", eps=0.1, steps=1)(_split_model(), X, Y), "model"),
    ("labels on the meta device", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), X, Y.to("meta")), "y"),
    ("x with NaN", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), X * float("nan"), Y), "x"),
    ("x outside [0, 1]", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), X + 2, Y), "x"),
    ("x of one dimension", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), X.flatten(), Y), "x"),
    ("labels out of range", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), X, Y + 10), "y"),
    ("float labels", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), X, Y.float()), "y"),
    ("too few labels", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), X, Y[:3]), "y"),
    ("a numpy string array as x", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), np.array(["a"] * 6), Y),
     "x"),
    ("complex x", lambda: _attack("pgd", eps=0.1, steps=1)(_model(), X.to(torch.complex64), Y), "x"),
    ("stats: labels out of range", lambda: _stats_update(GOOD_LOGITS, torch.tensor([0, 1, 2, 10])), "labels"),
    ("stats: NaN scores", lambda: _stats_update(GOOD_LOGITS * float("nan"), torch.arange(4)), "scores"),
    ("stats: 1-D scores", lambda: _stats_update(GOOD_LOGITS[0], torch.arange(4)), "scores"),
    ("stats: a float index", lambda: _stats_update(GOOD_LOGITS, torch.arange(4), torch.arange(4.0)), "index"),
    ("stats: a duplicate index mid-stream",
     lambda: _stats_update(GOOD_LOGITS, torch.arange(4), torch.arange(4), (GOOD_LOGITS, torch.arange(4),
                                                                          torch.arange(4))), "index"),
    ("stats: another class count mid-stream",
     lambda: _stats_update(torch.randn(4, 5), torch.arange(4), None, (GOOD_LOGITS, torch.arange(4), None)),
     "scores"),
    ("report: n_bins 0", lambda: _report(n_bins=0), "n_bins"),
    ("report: bootstrap -1", lambda: _report(bootstrap=-1), "bootstrap"),
    ("report: seed -1", lambda: _report(seed=-1), "seed"),
    ("report: labels of another length", lambda: _report(labels=torch.arange(10) % 4), "labels"),
    ("report: unknown inputs", lambda: _report(inputs="nope"), "inputs"),
    ("report: probabilities above 1", lambda: _report(scores=torch.full((20, 4), 2.0)), "scores"),
    ("audit: no models", lambda: _audit(models={}), "models"),
    ("audit: a model on the meta device", lambda: _audit(models={"m": _meta_model()}), "model"),
    ("audit: eps inf", lambda: _audit(epsilons=[float("inf")]), "eps"),
    ("audit: bootstrap -1", lambda: _audit(bootstrap=-1), "bootstrap"),
    ("audit: batch_size 0", lambda: _audit(batch_size=0), "batch_size"),
    ("audit: seed 2**63", lambda: _audit(seed=2**63), "seed"),
    ("audit: an unknown attack", lambda: _audit(attack="nope"), "attack"),
    ("audit: an unknown profile", lambda: _audit(profile="nope"), "profile"),
    ("audit: data of the wrong type", lambda: _audit(data=[1, 2, 3]), "data"),
    ("temperature: NaN logits",
     lambda: _fit("temperature", torch.full((8, 3), float("nan")), torch.arange(8) % 3),
     "logits"),
    ("temperature: labels out of range", lambda: _fit("temperature", torch.randn(8, 3), torch.arange(8)),
     "labels"),
    ("vector: one sample", lambda: _fit("vector", torch.randn(1, 3), torch.tensor([5])), "labels"),
    ("isotonic: labels of another length", lambda: _fit("isotonic", torch.randn(8, 3), torch.arange(4) % 3),
     "labels"),
]


@pytest.mark.parametrize(("what", "call", "argument"), API_ROWS, ids=[row[0] for row in API_ROWS])
def test_a_hostile_api_call_raises_an_advcal_error_naming_the_argument(what, call, argument):
    from advcal.errors import AdvcalError

    with pytest.raises(AdvcalError) as refused:
        call()
    assert names_the_argument(str(refused.value), argument, ""), str(refused.value)


def test_an_error_that_never_ran_through_the_users_code_keeps_its_traceback():
    from advcal._core.user_code import blame_user_code

    try:
        raise ValueError("a bug of advcal's own")
    except ValueError as error:
        assert blame_user_code(error) is None  # main re-raises it: a bug report needs the traceback
