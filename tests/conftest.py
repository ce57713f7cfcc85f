"""Shared fixtures: run the real `kit` CLI in fresh processes, and one tiny run reused by many tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "tiny.yaml"

# what `kit`'s entry point sets before torch starts (kit.determinism), for the tests that run the
# kit in this process: their runs then dispatch as a user's `kit` does
os.environ.update(__import__("kit.determinism", fromlist=["cpu_isa_pins"]).cpu_isa_pins())


@pytest.fixture(scope="session")
def kit_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kit-cache")


@pytest.fixture(scope="session")
def run_kit(kit_cache):
    """Run `python -m kit ARGS` in a fresh process (as a user would), from the repo root."""

    def run(*args: str, env: dict | None = None, check: bool = False, cwd: Path = REPO) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "KWANZAA_KIT_NO_REEXEC")}
        full_env.update({"KWANZAA_KIT_CACHE": str(kit_cache), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1",
                         "COLUMNS": "200"})
        full_env.update(env or {})
        proc = subprocess.run([sys.executable, "-m", "kit", *args], cwd=cwd, env=full_env, capture_output=True,
                              text=True, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"kit {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def kit_here(*args: str, catch_exceptions: bool = True):
    """`kit ARGS` in this process (click's test runner): where a fresh process would add only its
    start-up (no byte compared with a pinned run, no signal, no environment of its own). With
    catch_exceptions=False an unexpected exception fails the test with its own traceback."""
    from click.testing import CliRunner

    from kit.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=catch_exceptions)


def write_recipe(path: Path, **changes) -> Path:
    """A copy of recipes/tiny.yaml with some top-level fields or `section.key` values changed."""
    import yaml

    recipe = yaml.safe_load(TINY.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            recipe[section][field] = value
        else:
            recipe[section] = value
    for k in ("train", "eval"):
        recipe["data"][k] = str((TINY.parent / recipe["data"][k]).resolve())
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_run(run_kit, tmp_path_factory) -> Path:
    """One complete `kit train --recipe recipes/tiny.yaml` run (LoRA), shared read-only."""
    out = tmp_path_factory.mktemp("runs") / "tiny-lora"
    run_kit("train", "--recipe", str(TINY), "--output", str(out), "--json", check=True)
    return out


def changed_data_layout(root: Path) -> Path:
    """recipes/tiny.yaml (the same file, so the same recipe sha256) beside a copy of the data whose
    first training row has one word changed; returns the recipe's path."""
    (root / "recipes").mkdir(parents=True)
    shutil.copy(TINY, root / "recipes" / "tiny.yaml")
    data = root / "data" / "kwanzaa"
    shutil.copytree(REPO / "data" / "kwanzaa", data)
    rows = (data / "train.jsonl").read_text().splitlines()
    rows[0] = rows[0].replace("Kwanzaa", "Kwanzaa!", 1)
    (data / "train.jsonl").write_text("\n".join(rows) + "\n")
    return root / "recipes" / "tiny.yaml"


@pytest.fixture(scope="session")
def changed_data_run(run_kit, tmp_path_factory) -> Path:
    """The tiny recipe trained (uninterrupted, --allow-data-change) and evaluated on data with one
    changed row; shared read-only."""
    recipe = changed_data_layout(tmp_path_factory.mktemp("changed-data"))
    out = recipe.parent.parent / "run"
    run_kit("train", "--recipe", str(recipe), "--output", str(out), "--allow-data-change", check=True)
    run_kit("eval", str(out), check=True)
    return out


def _private_copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the shared tiny run, for tests that change files."""
    return _private_copy(tiny_run, tmp_path)


@pytest.fixture(scope="session")
def evaluated_run(tiny_run, run_kit, tmp_path_factory) -> Path:
    """The shared tiny run, copied once and evaluated (kit eval); read-only for tests."""
    out = tmp_path_factory.getbasetemp() / "evaluated-tiny"
    if not (out / "eval" / "metrics.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tiny_run, out)
        run_kit("eval", str(out), "--json", check=True)
    return out


@pytest.fixture
def run_copy(evaluated_run, tmp_path) -> Path:
    """A private copy of the evaluated tiny run, for tests that change files."""
    return _private_copy(evaluated_run, tmp_path)


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


@pytest.fixture(scope="session")
def tiny_reference(evaluated_run, tmp_path_factory) -> Path:
    """references/tiny/<this class>.json in a folder of its own: the evaluated run plus four seeds
    spread around it (a real 5-seed reference takes minutes; the bit-exact part is real)."""
    from kit.verify import reference

    from samples import sample_reference

    ref = sample_reference(reference.run_results(evaluated_run))
    folder = tmp_path_factory.getbasetemp() / "references"
    path = folder / "tiny" / f"{ref['hardware_class_slug']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ref))
    return path
