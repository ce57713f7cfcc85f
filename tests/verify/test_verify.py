"""kit verify: bit-exact, equivalent or mismatch against a reference, every cause named.

The verdict logic is tested on results and references built in memory (fast); the CLI on the
shared tiny run, evaluated once, against a reference derived from it (slow).
"""

from __future__ import annotations

import json
import shutil

import pytest

from kit.errors import ReferenceFileError
from kit.verify import judge as verify
from kit.verify import reference
from kit.verify.artifact import verify_artifact

from conftest import REPO, manifest
from samples import HARDWARE, SHA, sample_reference, sample_results


def judge(run: dict, ref: dict | None = None, checks: list | None = None, allow: bool = False) -> dict:
    return verify.judge(run, checks or [], ref or sample_reference(), allow)


def fields(result: dict, effect: str | None = None) -> list[str]:
    return [c["field"] for c in result["causes"] if effect is None or c["effect"] == effect]


# ---- the band rule ---------------------------------------------------------------------------

def test_olympic_mean_drops_one_min_and_one_max():
    assert reference.olympic_mean([1.0, 2.0, 3.0, 4.0, 100.0]) == 3.0
    assert reference.olympic_mean([1.0, 2.0, 6.0]) == 3.0  # fewer than 5: the plain mean


def test_t_quantiles_match_the_table_and_the_expansion():
    assert reference.t975(4) == 2.7764
    assert abs(reference.t975(30) - 2.0423) < 1e-3 and abs(reference.t975(1000) - 1.9623) < 1e-3


def test_band_is_a_prediction_interval_around_the_olympic_mean():
    values = [10.0, 10.2, 9.8, 10.1, 9.9]
    b = reference.band(values, floor=0.0)
    sd = reference.sample_sd(values)
    assert b["center"] == pytest.approx(10.0)
    assert b["half_width"] == pytest.approx(2.7764 * sd * (1 + 1 / 5) ** 0.5)
    assert b["low"] == pytest.approx(10.0 - b["half_width"]) and b["n"] == 5


def test_band_never_collapses_below_its_floor():
    b = reference.band([0.0] * 5, floor=reference.fraction_floor([8] * 5), bounds=(0.0, 1.0))
    assert (b["low"], b["high"]) == (0.0, 0.125)  # one eval item of eight
    assert reference.loss_floor([2.0] * 5) == pytest.approx(0.002)  # 0.1% of a loss


def test_a_metric_with_no_data_in_every_seed_accepts_only_no_data():
    b = reference.band([None] * 5, floor=0.0)
    assert reference.in_band(None, b) and not reference.in_band(0.0, b)


def test_a_reference_needs_five_seeds_including_the_recipes_own():
    with pytest.raises(ValueError, match="5 seed runs"):
        reference.derive_bands([sample_results()] * 4)
    with pytest.raises(ValueError, match="own seed 42"):
        reference.build([sample_results(s) for s in (1, 2, 3, 4, 5)], 42, "r.yaml", "test", [])


def test_reference_records_the_seed_run_and_every_seed():
    ref = sample_reference()
    assert ref["schema"] == reference.SCHEMA and ref["recipe"]["seed"] == 42
    assert ref["outputs"]["adapter_sha256"] == f"{42:064d}" and ref["lock_sha256"] == "7" * 64
    assert [s["seed"] for s in ref["seeds"]] == [42, 1, 2, 3, 4]
    assert ref["hardware_class_slug"] == "cpu-x86_64-avx2-w1-t2-det"
    assert [p["step"] for p in ref["bands"]["loss_curve"]] == [1, 2, 3]


# ---- verdicts --------------------------------------------------------------------------------

def test_same_inputs_class_software_and_bytes_is_bit_exact():
    result = judge(sample_results())
    assert result["verdict"] == "bit-exact" and result["exit_code"] == 0 and result["causes"] == []


def test_a_file_that_no_longer_matches_its_manifest_is_a_mismatch_naming_it():
    checks = [{"key": "outputs.adapter.files.adapter_model.safetensors", "recorded": "a" * 64,
               "recomputed": "b" * 64, "ok": False}]
    result = judge(sample_results(), checks=checks)
    assert result["verdict"] == "mismatch" and result["exit_code"] == 1
    cause = result["causes"][0]
    assert cause["kind"] == "integrity" and "adapter_model.safetensors" in cause["message"]
    assert "changed after the run" in cause["meaning"]


@pytest.mark.parametrize("key", ["dataset", "recipe", "tokenizer", "base_model"])
def test_verify_refuses_a_run_whose_input_differs_and_names_it(key):
    run = sample_results()
    run["inputs"][key] = "9" * 64
    with pytest.raises(verify.InputsDifferError) as e:
        judge(run)
    assert e.value.exit_code == 2 and f"{key} {SHA[key][:12]}... -> 999999999999..." in e.value.message
    assert "--allow-input-change" in e.value.message


def test_with_allow_input_change_a_changed_dataset_is_a_mismatch_naming_the_dataset_and_the_file():
    run = sample_results()
    run["inputs"]["dataset"] = "9" * 64
    run["input_details"]["dataset"]["train"] = "8" * 64
    result = judge(run, allow=True)
    assert result["verdict"] == "mismatch"
    assert fields(result, "mismatch") == ["dataset"]
    assert result["causes"][0]["differs"] == ["train: 555555555555... -> 888888888888..."]
    assert "other rows" in result["causes"][0]["meaning"]


def test_a_changed_recipe_value_is_a_mismatch_naming_the_recipe_field_even_when_the_numbers_agree():
    run = sample_results()
    run["inputs"]["recipe"] = "9" * 64
    run["input_details"]["recipe"]["training"]["learning_rate"] = 0.003
    result = judge(run, allow=True)
    assert result["verdict"] == "mismatch" and fields(result, "mismatch") == ["recipe"]
    assert "(training.learning_rate: 0.002 -> 0.003)" in result["causes"][0]["message"]


def test_another_library_version_is_equivalent_when_in_band_and_names_both_versions():
    run = sample_results(shift=0.001)
    run["environment"]["software"]["transformers"] = "5.18.0"
    run["outputs"]["adapter_sha256"] = "e" * 64
    result = judge(run)
    assert result["verdict"] == "equivalent" and result["exit_code"] == 0
    messages = [c["message"] for c in result["causes"]]
    assert "transformers 5.17.0 -> 5.18.0" in messages
    assert "kernels and summation order" in result["causes"][0]["meaning"]
    assert "adapter" in fields(result, "not-bit-exact")
    assert result["same"] == {"inputs": True, "hardware_class": True, "software": False, "outputs": False,
                              "files_match_manifest": True}


def test_another_library_version_with_the_same_bytes_is_still_not_bit_exact():
    run = sample_results()
    run["environment"]["software"]["torch"] = "2.14.0+cpu"
    assert judge(run)["verdict"] == "equivalent"


def test_another_device_and_world_size_are_named_with_both_values():
    run = sample_results()
    run["environment"]["hardware"].update(device_type="cuda", device_name="NVIDIA A100-SXM4-80GB",
                                          compute_capability="8.0", world_size=2)
    run["environment"]["hardware"].pop("cpu_arch")
    result = judge(run)
    messages = [c["message"] for c in result["causes"]]
    assert "device None -> NVIDIA A100-SXM4-80GB" in messages and "device_type cpu -> cuda" in messages
    assert "world_size 1 -> 2" in messages
    assert result["verdict"] == "equivalent" and result["reference"]["same_class"] is False


def test_a_metric_just_outside_the_band_is_a_mismatch_naming_metric_value_band_and_distance():
    ref = sample_reference()
    high = ref["bands"]["metrics"]["parse_rate"]["high"]
    run = sample_results()
    run["metrics"]["parse_rate"]["value"] = high + 1e-9
    result = judge(run, ref)
    assert result["verdict"] == "mismatch"
    cause = next(c for c in result["causes"] if c["kind"] == "band")
    assert cause["field"] == "parse_rate" and cause["value"] == high + 1e-9
    assert cause["band"][1] == high and cause["distance"] == pytest.approx(1e-9)
    assert cause["message"].startswith("parse_rate ") and "outside the band" in cause["message"]


def test_a_metric_just_inside_the_band_is_equivalent():
    ref = sample_reference()
    run = sample_results()
    run["metrics"]["parse_rate"]["value"] = ref["bands"]["metrics"]["parse_rate"]["high"] - 1e-9
    run["outputs"]["eval_metrics_sha256"] = "e" * 64
    result = judge(run, ref)
    assert result["verdict"] == "equivalent"
    assert fields(result) == ["eval_metrics"]  # other bytes, explained; nothing out of band


def test_same_class_and_software_but_other_bytes_names_what_the_class_does_not_record():
    run = sample_results()
    run["outputs"]["adapter_sha256"] = "e" * 64
    run["loss_curve"][2]["loss"] += 1e-6
    result = judge(run)
    cause = next(c for c in result["causes"] if c["field"] == "adapter")
    assert "first differs at step 3" in cause["message"] and "should not happen" not in cause["meaning"]
    assert all(w in cause["meaning"] for w in ("microcode", "built from source", "ATEN_CPU_CAPABILITY", "MKL_CBWR"))


def test_a_loss_point_out_of_band_is_a_mismatch_naming_the_step():
    run = sample_results()
    run["loss_curve"][1]["loss"] = 5.0
    result = judge(run)
    cause = next(c for c in result["causes"] if c["field"] == "loss_curve")
    assert result["verdict"] == "mismatch" and cause["steps"] == [2]
    assert "1 of 3 steps outside the band; first step 2: 5" in cause["message"]


def test_another_number_of_steps_is_a_mismatch():
    run = sample_results()
    run["loss_curve"] = run["loss_curve"][:2]
    result = judge(run)
    assert "steps" in fields(result, "mismatch") and result["verdict"] == "mismatch"


# ---- reference files -------------------------------------------------------------------------

def test_a_reference_of_another_schema_version_is_refused_naming_file_and_field(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({**sample_reference(), "schema": "kwanzaa-kit.reference.v0"}))
    with pytest.raises(ReferenceFileError) as e:
        reference.load(path)
    assert str(path) in e.value.message and "`schema`" in e.value.message and e.value.exit_code == 2


def test_a_reference_missing_a_field_is_refused_naming_it(tmp_path):
    ref = sample_reference()
    del ref["bands"]["loss_curve"]
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(ref))
    with pytest.raises(ReferenceFileError, match="`bands.loss_curve` is missing"):
        reference.load(path)


def test_the_reference_of_this_hardware_class_is_preferred(tmp_path, monkeypatch):
    monkeypatch.setenv(reference.REFERENCES_ENV, str(tmp_path))
    (tmp_path / "tiny").mkdir()
    other = tmp_path / "tiny" / "cuda-nvidia-h100-cc9.0-w1-t2-det.json"
    other.write_text("{}")
    assert reference.locate("tiny", HARDWARE) == (other, False)
    own = tmp_path / "tiny" / "cpu-x86_64-avx2-w1-t2-det.json"
    own.write_text("{}")
    assert reference.locate("tiny", HARDWARE) == (own, True)
    assert reference.locate("other-recipe", HARDWARE) is None


# ---- published artifacts ---------------------------------------------------------------------

def test_artifact_files_are_checked_against_published_checksums(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "adapter_config.json").write_text("{}")
    import hashlib

    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    (tmp_path / "c.sha256").write_text(reference.checksums_text(sums))
    assert verify_artifact(folder, tmp_path / "c.sha256")["ok"]
    (folder / "adapter_model.safetensors").write_bytes(b"weightz")
    result = verify_artifact(folder, tmp_path / "c.sha256")
    assert not result["ok"]
    assert [(f["file"], f["status"]) for f in result["files"]] == [("adapter_config.json", "ok"),
                                                                  ("adapter_model.safetensors", "differs")]


# ---- the CLI on a real tiny run (slow) -------------------------------------------------------

def _verify(run_kit, *args, env=None):
    proc = run_kit("verify", *args, "--json", env=env)
    assert proc.stdout.strip(), proc.stderr
    return proc, json.loads(proc.stdout)


@pytest.mark.slow
def test_kit_verify_finds_this_class_reference_and_says_bit_exact(evaluated_run, tiny_reference, run_kit):
    proc, result = _verify(run_kit, str(evaluated_run),
                           env={reference.REFERENCES_ENV: str(tiny_reference.parent.parent)})
    assert proc.returncode == 0, proc.stderr
    assert result["verdict"] == "bit-exact" and result["causes"] == []
    assert result["reference"]["file"] == str(tiny_reference) and result["reference"]["located"]
    assert result["reference"]["same_class"] is True


@pytest.mark.slow
def test_a_fresh_tiny_run_reproduces_the_committed_reference(evaluated_run, run_kit, monkeypatch):
    """Bit-exact on the machine class and locked software the reference was made with; equivalent
    (inside the band) on any other."""
    monkeypatch.setenv(reference.REFERENCES_ENV, str(REPO / "references"))
    env = manifest(evaluated_run)["inputs"]["environment"]
    found = reference.locate("tiny", env["hardware"])
    if found is None:
        pytest.skip("no committed reference for recipes/tiny.yaml yet")
    committed = json.loads(found[0].read_text())
    same = committed["hardware_class"] == env["hardware"] and committed["software"] == env["software"]
    proc, result = _verify(run_kit, str(evaluated_run), "--reference", str(found[0]))
    assert result["verdict"] == ("bit-exact" if same else "equivalent"), proc.stderr or result["causes"]


@pytest.mark.slow
def test_one_byte_of_the_adapter_changed_is_a_mismatch_naming_the_file(run_copy, tiny_reference, run_kit):
    weights = run_copy / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    proc, result = _verify(run_kit, str(run_copy), "--reference", str(tiny_reference))
    assert proc.returncode == 1 and result["verdict"] == "mismatch"
    integrity = [c["field"] for c in result["causes"] if c["kind"] == "integrity"]
    assert "outputs.adapter.files.adapter_model.safetensors" in integrity and "outputs.adapter.sha256" in integrity


@pytest.mark.slow
def test_a_reference_of_the_wrong_schema_version_exits_2_naming_it(evaluated_run, tiny_reference, run_kit, tmp_path):
    bad = tmp_path / "old.json"
    bad.write_text(json.dumps({**json.loads(tiny_reference.read_text()), "schema": "kwanzaa-kit.reference.v0"}))
    proc = run_kit("verify", str(evaluated_run), "--reference", str(bad))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert str(bad) in proc.stderr and "`schema`" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_missing_run_exits_2(run_kit, tmp_path):
    proc = run_kit("verify", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "run directory not found" in proc.stderr and "nope" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run_kit("verify", str(tmp_path / "empty"))
    assert proc.returncode == 2 and "no manifest.json" in proc.stderr


@pytest.mark.slow
def test_one_changed_data_row_is_refused_then_a_mismatch_naming_the_dataset(tiny_reference, changed_data_run, run_kit):
    # the same recipe file (same sha256) next to a copy of the data with one row changed
    run = changed_data_run
    refused = run_kit("verify", str(run), "--reference", str(tiny_reference))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "dataset" in refused.stderr and "recipe" not in refused.stderr.split("Fix:")[0]
    proc, result = _verify(run_kit, str(run), "--reference", str(tiny_reference), "--allow-input-change")
    assert proc.returncode == 1 and result["verdict"] == "mismatch"
    assert [c["field"] for c in result["causes"] if c["kind"] == "input"] == ["dataset"]


@pytest.mark.slow
def test_kit_verify_artifact_exits_1_naming_the_changed_file(evaluated_run, run_kit, tmp_path):
    folder = tmp_path / "published"
    shutil.copytree(evaluated_run / "adapter", folder)
    sums = tmp_path / "checksums.sha256"
    sums.write_text(reference.checksums_text(manifest(evaluated_run)["outputs"]["adapter"]["files"]))
    assert run_kit("verify", "--artifact", str(folder), "--checksums", str(sums)).returncode == 0
    (folder / "adapter_config.json").write_text("{}")
    proc = run_kit("verify", "--artifact", str(folder), "--checksums", str(sums))
    assert proc.returncode == 1 and "adapter_config.json" in proc.stdout and "differs" in proc.stdout
