"""The command line's allocator setting: freed memory is reused, not faulted in again.

Each case runs in a fresh process: the setting holds for a whole process, and the test
session's own allocations would muddle the page-fault counts.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, resource, torch
    from advcal._core.allocator import keep_freed_memory
    applied = keep_freed_memory()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3))
    x = torch.rand(256, 1, 28, 28, requires_grad=True)
    def attack_step():  # a forward and backward pass with respect to the input, as PGD's
        torch.autograd.grad(model(x).square().sum(), x)
    for _ in range(3):
        attack_step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        attack_step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"applied": applied, "faults": faults}))
    """
)


def run(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "ADVCAL_MALLOC"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=clean | env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    tuned, system = run(), run(ADVCAL_MALLOC="system")
    assert tuned["applied"] is True and system["applied"] is False
    # Activations and gradients (37 MB for the second layer's output) are mapped afresh for
    # every pass unless malloc keeps them: measured 400,000 faults in 5 passes against 9,000.
    assert system["faults"] > 50_000
    assert tuned["faults"] < system["faults"] / 10


@glibc
def test_the_user_s_own_malloc_settings_are_left_alone():
    assert run(MALLOC_ARENA_MAX="2")["applied"] is False


def test_the_console_script_and_python_m_apply_it_and_main_does_not(monkeypatch):
    """In-process callers of main (tests, notebooks) keep their allocator as it was."""
    import advcal.cli as cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("tuned") or True)
    monkeypatch.setattr(cli, "main", lambda argv=None: calls.append("main"))
    cli.entry_point()
    assert calls == ["tuned", "main"]
