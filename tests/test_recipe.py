"""A recipe is validated on load; every mistake is one line naming the file, line, key and fix."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kit.cli import cli
from kit.recipe import load_recipe

from conftest import TINY

BAD_RECIPES = {
    # name: (change to the text of recipes/tiny.yaml, expected words in the message)
    "unknown_key": (("  epochs: 1\n", "  epochs: 1\n  epoches: 2\n"), ["unknown key `training.epoches`", ":"]),
    "wrong_type": (("  epochs: 1\n", "  epochs: two\n"), ["`training.epochs`", "valid integer"]),
    "missing_field": (("seed: 42\n", ""), ["missing required key `seed`"]),
    "malformed_yaml": (("  r: 16\n", "  r: [16\n"), ["malformed YAML"]),
    "bad_enum": (("  method: lora\n", "  method: full\n"), ["`adapter.method`"]),
    "negative_lr": (("  learning_rate: 0.002\n", "  learning_rate: -1.0\n"), ["`training.learning_rate`"]),
    "hub_revision_is_a_short_commit": (("  source: random\n",
                                        "  source: hub\n  id: allenai/OLMo-7B-Instruct-hf\n  revision: 5a74619\n"),
                                       ["`model.revision`", "short commit is ambiguous"]),
}


@pytest.mark.parametrize("name", sorted(BAD_RECIPES))
def test_bad_recipe_is_one_line_with_file_line_key_and_fix(name, tmp_path):
    (old, new), words = BAD_RECIPES[name]
    text = TINY.read_text()
    assert old in text, name
    bad = tmp_path / f"{name}.yaml"
    bad.write_text(text.replace(old, new, 1))
    result = CliRunner().invoke(cli, ["train", "--recipe", str(bad), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert str(bad) in message and "Fix:" in message
    for w in words:
        assert w in message
    assert "Traceback" not in result.output


def test_error_names_the_line_of_the_bad_key(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text(TINY.read_text().replace("  epochs: 1\n", "  epochs: two\n"))
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if t == "  epochs: two")
    with pytest.raises(Exception) as info:
        load_recipe(bad)
    assert f"{bad}:{line}:" in str(info.value)


def test_missing_recipe_file(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--recipe", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "recipe file not found" in result.output


def test_shipped_recipes_validate():
    for path in sorted(TINY.parent.glob("*.yaml")):
        loaded = load_recipe(path)
        assert loaded.recipe.name == path.stem
        assert len(loaded.sha256()) == 64
