"""Every reader of a file a user can hand the kit, fuzzed: whatever the bytes, the reader returns its
value or raises one KitError (exit 2, one line). Recipes, data rows, responses and eval rows,
manifests and run files, references, checksums: random text and bytes, and valid documents with
one part replaced by any JSON value or taken away."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit import io, rundir
from kit.errors import KitError

from conftest import REPO, TINY

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                           max_size=4), max_leaves=12)
EVAL_ROW = json.loads((REPO / "data/kwanzaa/eval.jsonl").read_text().splitlines()[0])


def _paths(doc, prefix=()):
    yield prefix
    children = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in children:
        yield from _paths(value, (*prefix, key))


@st.composite
def mutated(draw, doc):
    """DOC with one part (any depth) replaced by any JSON value, or removed."""
    doc = copy.deepcopy(doc)
    path = draw(st.sampled_from(list(_paths(doc))[1:]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent[path[-1]] = draw(JSON)
    else:
        del parent[path[-1]]
    return doc


def _refused_or_read(read, *args):
    """The reader's value, or None when it refused with a KitError; anything else fails the test."""
    try:
        return read(*args)
    except KitError as e:
        assert "\n" not in e.format_message()
        return None


# ---- strict JSON -----------------------------------------------------------------------------

@FUZZ
@given(st.text(max_size=200))
def test_any_text_is_json_or_one_json_problem(text):
    try:
        io.loads(text)
    except io.JsonProblem:
        pass


@FUZZ
@given(JSON)
def test_every_json_value_reads_back_as_itself(value):
    assert io.loads(io.dumps(value)) == value


# ---- recipes ---------------------------------------------------------------------------------

TINY_DOC = yaml.safe_load(TINY.read_text())


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode),
                 JSON.map(lambda v: yaml.safe_dump(v).encode())))
def test_any_recipe_file_loads_or_is_refused_in_one_line(tmp_path, content):
    from kit.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    _refused_or_read(load_recipe, path)


@FUZZ
@given(mutated(TINY_DOC))
def test_a_recipe_with_any_field_changed_loads_or_is_refused_in_one_line(tmp_path, doc):
    from kit.recipe import from_resolved, load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    loaded = _refused_or_read(load_recipe, path)
    if loaded is not None:  # what loads, round-trips through the run's recipe.json
        assert from_resolved(loaded.resolved_dict(), "recipe.json") == loaded.recipe


# ---- data rows, eval rows and responses ------------------------------------------------------

LINES = st.lists(st.one_of(JSON.map(json.dumps), st.text(max_size=60), mutated(EVAL_ROW).map(json.dumps)),
                 min_size=1, max_size=4)


@FUZZ
@given(LINES)
def test_any_training_data_is_read_or_refused_in_one_line(tmp_path, lines):
    from kit.data.rows import read_rows

    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    _refused_or_read(read_rows, path)


@FUZZ
@given(st.one_of(LINES, st.lists(mutated(EVAL_ROW).map(json.dumps), min_size=1, max_size=2)),
       st.one_of(LINES, st.lists(st.text(max_size=300).map(lambda t: json.dumps({"id": EVAL_ROW["id"], "response": t})),
                                 min_size=1, max_size=1)))
def test_any_eval_data_and_responses_are_scored_or_refused_in_one_line(tmp_path, data_lines, response_lines):
    from kit.evaluate.score import score_files

    data, responses = tmp_path / "eval.jsonl", tmp_path / "responses.jsonl"
    data.write_text("\n".join(data_lines) + "\n")
    responses.write_text("\n".join(response_lines) + "\n")
    _refused_or_read(score_files, data, responses)


@FUZZ
@given(st.text(max_size=400).map(lambda t: json.dumps({"id": EVAL_ROW["id"], "response": t})))
def test_any_model_output_is_scored(tmp_path, line):
    from kit.evaluate.score import score_files

    data, responses = tmp_path / "eval.jsonl", tmp_path / "responses.jsonl"
    data.write_text(json.dumps(EVAL_ROW) + "\n")
    responses.write_text(line + "\n")
    assert score_files(data, responses)["n_rows"] == 1


# ---- a run's files ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory) -> Path:
    from runs import make_run

    return make_run(tmp_path_factory.mktemp("fuzz") / "run")


def _with_file(run: Path, name: str, text: str, tmp_path: Path) -> Path:
    copy_ = tmp_path / "run"
    if copy_.exists():
        shutil.rmtree(copy_)
    shutil.copytree(run, copy_)
    (copy_ / name).write_text(text)
    return copy_


@FUZZ
@given(st.data())
def test_any_manifest_is_read_or_refused_by_every_command_that_reads_it(fuzz_run, tmp_path, data):
    from kit import fingerprint
    from kit.verify import reference

    original = json.loads((fuzz_run / "manifest.json").read_text())
    doc = data.draw(st.one_of(mutated(original), JSON))
    run = _with_file(fuzz_run, "manifest.json", json.dumps(doc), tmp_path)
    _refused_or_read(rundir.read_manifest, run, True)
    _refused_or_read(fingerprint.rehash, run)
    _refused_or_read(reference.run_results, run)


@FUZZ
@given(st.sampled_from(["train_log.jsonl", "eval/metrics.json", "recipe.json", ".local.json"]), st.data())
def test_any_run_file_is_read_or_refused(fuzz_run, tmp_path, name, data):
    from kit.verify import reference

    if name.endswith(".jsonl"):
        text = "\n".join(data.draw(st.lists(st.one_of(JSON.map(json.dumps), st.text(max_size=40)), max_size=4)))
    else:
        text = json.dumps(data.draw(st.one_of(mutated(json.loads((fuzz_run / name).read_text())), JSON)))
    run = _with_file(fuzz_run, name, text, tmp_path)
    _refused_or_read(reference.run_results, run)
    _refused_or_read(rundir.read_local, run)


# ---- references and checksums ----------------------------------------------------------------

@FUZZ
@given(st.data())
def test_any_reference_is_refused_or_usable_by_the_verdict(tmp_path, data):
    from kit.verify import judge, reference

    from samples import sample_reference, sample_results

    doc = data.draw(st.one_of(mutated(sample_reference()), JSON))
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(doc))
    ref = _refused_or_read(reference.load, path)
    if ref is not None:  # whatever load accepts, the verdict can use
        judge.judge(sample_results(), [], ref, allow_input_change=True)


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=80), st.tuples(st.sampled_from(["a" * 64, "0" * 63, "F" * 64]),
                                                              st.text(max_size=30)).map("  ".join)), max_size=5))
def test_any_checksums_file_lists_only_files_inside_the_folder_or_is_refused(tmp_path, lines):
    from kit.verify import reference

    path = tmp_path / "checksums.sha256"
    path.write_text("\n".join(lines) + "\n")
    files = _refused_or_read(reference.read_checksums, path)
    for name in files or {}:
        assert not name.startswith("/") and ".." not in name.replace("\\", "/").split("/")
