"""One registry idiom: every name users type (attacks, models, calibrators, data kinds, recipes,
text attacks) lives in a Registry, is refused with the known names when unknown, and is listed
with a summary by ``advcal list``."""

from __future__ import annotations

import os

import pytest

import advcal
from advcal._core.errors import ConfigError
from advcal._core.registry import Registry, first_line
from advcal.attacks import ATTACKS, get_attack
from advcal.calibration import CALIBRATORS
from advcal.configs import LISTS, ListConfig
from advcal.data import KINDS, load_data
from advcal.models import BUILTIN_MODELS
from advcal.text.attack_table import TEXT_ATTACKS
from advcal.text.reference import BUILTIN_TEXT_MODELS
from advcal.training import CLIP_RECIPES, RECIPES, Recipe
from conftest import advcal_cli, one_line_error

REGISTRIES = (ATTACKS, CALIBRATORS, KINDS, BUILTIN_MODELS, RECIPES, TEXT_ATTACKS, BUILTIN_TEXT_MODELS)


def test_a_registry_is_a_mapping_that_refuses_a_name_twice_and_names_the_known_on_a_miss():
    registry: Registry[int] = Registry("widget")
    registry.add("one", 1, "the first")
    registry.add("two", 2, "the second")
    assert list(registry) == ["one", "two"] and registry["two"] == 2 and "one" in registry
    assert registry.summaries() == [("one", "the first"), ("two", "the second")]
    with pytest.raises(ConfigError, match="widget: the name 'one' is already registered"):
        registry.add("one", 3)
    with pytest.raises(ConfigError, match=r"--widget: unknown widget 'three'; known: one, two"):
        registry.pick("three", "--widget")
    with pytest.raises(ConfigError, match="unknown widget 3"):
        registry.pick(3)


def test_every_registered_name_has_a_summary():
    for registry in REGISTRIES:
        assert len(registry) >= 2, registry
        for name, summary in registry.summaries():
            assert name == name.strip().lower() and len(summary) >= 15, (name, summary)
            assert "``" not in summary and "  " not in summary, (name, summary)
    assert first_line(Recipe) == ("Everything that decides how a classifier is trained (recorded with "
                                  "every run).")


def test_the_registries_are_what_the_loaders_read():
    """A name is usable exactly when it is registered: no second table anywhere."""
    assert {type(get_attack(name)).__name__ for name in ATTACKS} >= {"PGD", "APGD", "AutoAttack", "Square"}
    assert set(KINDS) == {"digits", "fashion-mnist", "cifar10", "cifar100", "npz", "folder", "torchvision"}
    assert len(load_data("digits", limit=20).classes) == 10
    assert CLIP_RECIPES == ("ucat", "tecoa", "fare") and all(name in RECIPES for name in CLIP_RECIPES)
    with pytest.raises(ConfigError, match="recipe: expected one of standard, pgd-at"):
        Recipe(name="madry")
    with pytest.raises(ConfigError, match="attack: unknown attack 'pgdd'; known: fgsm, pgd,"):
        get_attack("pgdd")


@pytest.mark.parametrize("what", LISTS)
def test_advcal_list_prints_every_name_of_each_kind(what, monkeypatch):
    rows = advcal.run_list(ListConfig(what))
    monkeypatch.setitem(os.environ, "COLUMNS", "250")  # one table row per line
    done = advcal_cli("list", what)
    assert done.returncode == 0, done.stderr
    for name, summary in rows:
        assert name in done.stdout and summary[:30] in done.stdout, name


def test_advcal_list_refuses_an_unknown_kind_in_one_line():
    assert one_line_error(advcal_cli("list", "gadgets")) == (
        "advcal: error: what: expected one of attacks, models, calibrators, data, recipes, text-attacks, "
        "got 'gadgets'")
