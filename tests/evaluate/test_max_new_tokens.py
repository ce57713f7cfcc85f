"""A recipe's evaluation.max_new_tokens lets its model write the longest reference answer of its eval
data: a model that answers at reference length is never cut off and scored invalid."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.data.check import default_tokenizer, token_lengths
from kit.data.rows import read_rows
from kit.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def longest_eval_answer(recipe_path: Path) -> int:
    """Tokens of the longest assistant answer (with its end-of-sequence token) among the eval rows
    the recipe evaluates, with the OLMo tokenizer and chat template."""
    loaded = load_recipe(recipe_path)
    rows = read_rows(loaded.resolve(loaded.recipe.data.eval))
    rows = rows[:loaded.recipe.data.max_eval_rows] if loaded.recipe.data.max_eval_rows else rows
    return max(token_lengths(default_tokenizer(), row["messages"])[1] for row in rows)


def answering_recipes() -> list[Path]:
    """The recipes whose model can write answers; a random-init model (the CPU demo, the GPU
    determinism smoke tests) writes none, and its recipe says why it keeps a small value."""
    return [p for p in RECIPES if load_recipe(p).recipe.model.source != "random"]


def test_the_real_model_recipes_are_the_ones_checked():
    assert {p.name for p in answering_recipes()} == {"kwanzaa-olmo7b-lora.yaml", "kwanzaa-olmo7b-qlora.yaml"}


@pytest.mark.parametrize("recipe", answering_recipes(), ids=lambda p: p.stem)
def test_max_new_tokens_covers_the_longest_eval_reference_answer(recipe):
    longest = longest_eval_answer(recipe)
    assert load_recipe(recipe).recipe.evaluation.max_new_tokens >= longest, (
        f"{recipe.name}: evaluation.max_new_tokens is below the longest eval answer ({longest} tokens, "
        "`kit data check`): set it to that + a margin")


def test_the_demo_recipes_say_why_their_value_is_small():
    for recipe in set(RECIPES) - set(answering_recipes()):
        text = recipe.read_text("utf-8")
        block = text[text.index("evaluation:"):text.index("max_new_tokens:")]
        assert "on purpose" in block, f"{recipe.name}: say in a comment why max_new_tokens is small"


def test_data_check_reports_the_longest_answer_of_each_file():
    from kit.data.check import check_files

    eval_file = Path(__file__).resolve().parents[2] / "data" / "kwanzaa" / "eval.jsonl"
    report = check_files([eval_file], 2048)
    longest = report["files"][0]["longest_answer"]
    assert longest["tokens"] == longest_eval_answer(answering_recipes()[0]) and longest["id"].startswith("eval-")
    row = read_rows(eval_file)[longest["line"] - 1]
    assert row["id"] == longest["id"]
