"""Verify a run against a reference: bit-exact, equivalent or mismatch, and every cause named.

- bit-exact: same hardware class, same software, same inputs, and every output the reference
  recorded (adapter, train log, eval responses, eval metrics) has the same sha256.
- equivalent: not bit-exact (another class or software, or other bytes), but the eval loss,
  every metric and every loss-curve point lie inside the reference band (kit.reference).
- mismatch: something is out of band, a file no longer matches its manifest, or the inputs
  differ (a run on other inputs is another experiment, whatever its numbers). It takes
  precedence: equal hashes never hide a number out of band.

Runs whose inputs differ are refused (InputsDifferError, exit 2) unless allow_input_change.
Each cause says what differs (field, reference -> run) and, in a plain sentence, what it means.
"""

from __future__ import annotations

from pathlib import Path

from kit import fingerprint
from kit.errors import EXIT_CHECK_FAILED, EXIT_OK, KitError, ReferenceFileError
from kit.verify import reference

BIT_EXACT, EQUIVALENT, MISMATCH = "bit-exact", "equivalent", "mismatch"
HARDWARE_LABELS = {"device_type": "device_type", "device_name": "device", "compute_capability": "compute_capability",
                   "cpu_arch": "cpu_arch", "cpu_isa": "cpu_isa", "nodes": "nodes", "world_size": "world_size",
                   "deterministic": "deterministic", "cpu_threads": "cpu_threads"}

INPUT_MEANING = {
    "recipe": "a different recipe (any hyperparameter, seed or path) is a different experiment: its results "
              "are not a reproduction of this reference.",
    "dataset": "the training or eval data differ: the model learned from, or was scored on, other rows, so "
               "neither bytes nor metrics can be compared as a reproduction.",
    "tokenizer": "a different tokenizer or chat template turns the same text into other tokens: the model "
                 "sees other inputs.",
    "base_model": "a different base model (weights, revision or architecture) starts training from another "
                  "point.",
}
HARDWARE_MEANING = {
    "device_type": "CPU and GPU run entirely different kernels: bit-exact results are not expected; compare the band.",
    "device_name": "another device model runs other kernels with other rounding: bit-exact results are not "
                   "expected across devices; compare the band.",
    "compute_capability": "another GPU architecture picks other kernels: bit-exact results are not expected; "
                          "compare the band.",
    "cpu_arch": "another CPU architecture runs entirely different kernels: bit-exact results are not expected; "
                "compare the band.",
    "cpu_isa": "the CPU kernels dispatched to another instruction-set level (torch, MKL and oneDNN each sum in "
               "another order at each level; the kit pins x86-64 to AVX2, so this is a CPU without AVX2, another "
               "architecture, or ATEN_CPU_CAPABILITY/MKL_CBWR/ONEDNN_MAX_CPU_ISA set by hand): bit-exact results "
               "are not expected; compare the band.",
    "nodes": "the processes were spread over another number of machines, so the gradients' all-reduce sums in "
             "another order: bit-exact results are not expected; compare the band.",
    "world_size": "more processes split each step and sum gradients in another order (the effective batch is "
                  "unchanged): bit-exact results are not expected; compare the band.",
    "deterministic": "with deterministic algorithms off, even the same machine may give other bytes from run "
                     "to run.",
    "cpu_threads": "another thread count splits the CPU's sums differently, which changes the last bits "
                   "(measured: it changes the adapter bytes); compare the band.",
}
SOFTWARE_MEANING = "a different library version changes kernels and summation order: bit-exact results are " \
                   "not expected; compare the band."
LOCK_MEANING = "the environment was installed from another lock file, so some package differs: bit-exact " \
               "results are not expected; compare the band."
CPU_MEANING = "another CPU model at the same pinned instruction-set level runs the same kernels, so it is not " \
              "part of the class; noted for the record (if the bytes differ too, it is the first suspect)."
DRIVER_MEANING = "a different GPU driver rarely changes results (the kernels ship with torch); noted for the record."
INTEGRITY_MEANING = "a file of the run no longer matches the sha256 its manifest recorded: it was changed " \
                    "after the run (edited, truncated or corrupted), so the run cannot vouch for it. Restore " \
                    "it or re-run."
OUTPUT_EXPECTED = "expected when the hardware class or software differ: the band decides."
OUTPUT_UNEXPECTED = "same inputs, hardware class and software but other bytes. What the class does not record " \
                    "can still differ: the CPU's vendor and microcode (a library's vendor-specific code path that " \
                    "the instruction-set pin does not cover), a library built from source or patched under the " \
                    "same version, a GPU's firmware or driver, or an environment variable set by hand " \
                    "(PYTHONHASHSEED, CUBLAS_WORKSPACE_CONFIG, ATEN_CPU_CAPABILITY, MKL_CBWR, ONEDNN_MAX_CPU_ISA; " \
                    "each run's values are in its manifest, environment.cpu and driver too): compare the two " \
                    "manifests for them; the band decides whether the difference matters."
BAND_MEANING = "further from the reference than the seed-to-seed spread (or the floor) allows: a real " \
               "difference, not noise. With the same inputs, look at the environment causes; without any, " \
               "report it."
STEPS_MEANING = "the run logged another number of optimizer steps than the reference: the schedule differs " \
                "(epochs, max_steps, batch size or data size)."


class InputsDifferError(KitError):
    """A run and a reference trained on different inputs: comparing them is refused by default."""


def verify_run(run: Path, reference_path: Path | None = None, allow_input_change: bool = False) -> dict:
    """Compare RUN (complete and evaluated) with a reference file (default: located in references/)."""
    results = reference.run_results(Path(run))
    path = resolve_reference(results, reference_path)
    ref = reference.load(path)  # a bad reference is refused before any hashing
    integrity = fingerprint.rehash(Path(run))
    verdict = judge(results, integrity["checks"], ref, allow_input_change, where=str(run))
    verdict["reference"].update({"file": str(path), "located": reference_path is None})
    return verdict


def resolve_reference(results: dict, reference_path: Path | None) -> Path:
    if reference_path is not None:
        return Path(reference_path)
    found = reference.locate(results["recipe_name"], results["environment"]["hardware"])
    if found is None:
        folder = reference.references_dir() / results["recipe_name"]
        raise ReferenceFileError(f"no reference for recipe {results['recipe_name']!r}", where=str(folder),
                                 fix="pass --reference FILE, or make one with scripts/make_references.py")
    return found[0]


def judge(results: dict, integrity_checks: list[dict], ref: dict, allow_input_change: bool = False,
          where: str | None = None) -> dict:
    """The verdict and its causes, from a run's results, its re-hash checks and a loaded reference."""
    inputs = input_causes(results["inputs"], ref["inputs"], results.get("input_details"), ref.get("input_details"))
    if inputs and not allow_input_change:
        details = "; ".join(c["message"] for c in inputs)
        raise InputsDifferError(f"the run's inputs differ from the reference's ({details}): it is not a "
                                f"reproduction of it, so it is not compared", where=where,
                                fix="train with the reference's recipe and data, or pass --allow-input-change "
                                    "to compare anyway (the verdict is then mismatch, with the numbers)")
    env = results["environment"]
    same_class = env["hardware"] == ref["hardware_class"]
    same_software = env["software"] == ref["software"]
    integrity = integrity_causes(integrity_checks)
    environment = environment_causes(env, ref)
    why = ("expected: the inputs differ." if inputs else OUTPUT_EXPECTED if not (same_class and same_software)
           else OUTPUT_UNEXPECTED)
    outputs = output_causes(results, ref, why)
    checks = band_checks(results, ref["bands"])
    bands = band_causes(checks, results, ref)
    if inputs or integrity or bands:
        verdict = MISMATCH
    elif same_class and same_software and not outputs:
        verdict = BIT_EXACT
    else:
        verdict = EQUIVALENT
    return {
        "verdict": verdict,
        "exit_code": EXIT_CHECK_FAILED if verdict == MISMATCH else EXIT_OK,
        "causes": inputs + integrity + environment + outputs + bands,
        "same": {"inputs": not inputs, "hardware_class": same_class, "software": same_software,
                 "outputs": not outputs, "files_match_manifest": not integrity},
        "checks": checks,
        "reference": {"recipe": ref["recipe"]["name"], "recipe_sha256": ref["recipe"]["sha256"],
                      "hardware_class_slug": ref.get("hardware_class_slug"), "same_class": same_class},
    }


def _cause(kind: str, field: str, message: str, meaning: str, effect: str, **extra) -> dict:
    """effect: `mismatch` (decides the verdict), `not-bit-exact` (explains other bytes), `info`."""
    return {"kind": kind, "field": field, "message": message, "meaning": meaning, "effect": effect, **extra}


def _short(value) -> str:
    s = str(value)
    return s[:12] + "..." if len(s) == 64 and all(c in "0123456789abcdef" for c in s) else s


def input_causes(run_inputs: dict, ref_inputs: dict, run_details: dict | None = None,
                 ref_details: dict | None = None) -> list[dict]:
    out = []
    for key in reference.INPUT_KEYS:
        if run_inputs.get(key) == ref_inputs.get(key):
            continue
        message = f"{key} {_short(ref_inputs.get(key))} -> {_short(run_inputs.get(key))}"
        parts = differing_fields((ref_details or {}).get(key), (run_details or {}).get(key))
        if parts:
            message += " (" + "; ".join(parts[:5]) + ("; ..." if len(parts) > 5 else "") + ")"
        out.append(_cause("input", key, message, INPUT_MEANING[key], "mismatch", reference=ref_inputs.get(key),
                          run=run_inputs.get(key), differs=parts))
    return out


def differing_fields(a, b, prefix: str = "") -> list[str]:
    """`path: a -> b` for every leaf that differs between two JSON values (e.g. two resolved recipes)."""
    if a is None or b is None:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        return [line for k in sorted(set(a) | set(b))
                for line in (differing_fields(a.get(k), b.get(k), f"{prefix}{k}.")
                             if isinstance(a.get(k), dict) and isinstance(b.get(k), dict)
                             else [f"{prefix}{k}: {_short(a.get(k))} -> {_short(b.get(k))}"]
                             if a.get(k) != b.get(k) else [])]
    return [] if a == b else [f"{prefix.rstrip('.')}: {_short(a)} -> {_short(b)}"]


def integrity_causes(checks: list[dict]) -> list[dict]:
    return [_cause("integrity", c["key"], f"{c['key']}: manifest {_short(c['recorded'])}, file now "
                   f"{_short(c['recomputed'])}", INTEGRITY_MEANING, "mismatch",
                   reference=c["recorded"], run=c["recomputed"]) for c in checks if not c["ok"]]


def environment_causes(env: dict, ref: dict) -> list[dict]:
    out = []
    hw, ref_hw = env["hardware"], ref["hardware_class"]
    for key in sorted(set(hw) | set(ref_hw), key=lambda k: list(HARDWARE_LABELS).index(k) if k in HARDWARE_LABELS else 99):
        if hw.get(key) != ref_hw.get(key):
            label = HARDWARE_LABELS.get(key, key)
            out.append(_cause("environment", f"hardware.{key}", f"{label} {ref_hw.get(key)} -> {hw.get(key)}",
                              HARDWARE_MEANING.get(key, SOFTWARE_MEANING), "not-bit-exact",
                              reference=ref_hw.get(key), run=hw.get(key)))
    sw, ref_sw = env["software"], ref["software"]
    for key in sorted(set(sw) | set(ref_sw)):
        if sw.get(key) != ref_sw.get(key):
            meaning = LOCK_MEANING if key == "lock_sha256" else SOFTWARE_MEANING
            out.append(_cause("environment", f"software.{key}",
                              f"{key} {_short(ref_sw.get(key))} -> {_short(sw.get(key))}", meaning, "not-bit-exact",
                              reference=ref_sw.get(key), run=sw.get(key)))
    if ref.get("cpu") and env.get("cpu") and env["cpu"] != ref["cpu"]:
        out.append(_cause("environment", "cpu", f"cpu {ref['cpu']} -> {env['cpu']}", CPU_MEANING, "info",
                          reference=ref["cpu"], run=env["cpu"]))
    if ref.get("driver") and env.get("driver") and env["driver"] != ref["driver"]:
        out.append(_cause("environment", "driver", f"driver {ref['driver']} -> {env['driver']}", DRIVER_MEANING,
                          "info", reference=ref["driver"], run=env["driver"]))
    return out


def output_causes(results: dict, ref: dict, meaning: str) -> list[dict]:
    out = []
    for key in reference.OUTPUT_KEYS:
        mine, theirs = results["outputs"].get(key), ref["outputs"].get(key)
        if theirs is None or mine == theirs:
            continue
        name = key.removesuffix("_sha256")
        message = f"{name} {_short(theirs)} -> {_short(mine)}"
        if name in ("adapter", "train_log"):
            step = first_divergent_step(results["loss_curve"], ref["results"]["loss_curve"])
            if step is not None:
                message += f" (loss first differs at step {step})"
        out.append(_cause("output", name, message, meaning, "not-bit-exact", reference=theirs, run=mine))
    return out


def first_divergent_step(curve: list[dict], ref_curve: list[dict]) -> int | None:
    for a, b in zip(curve, ref_curve):
        if a["loss"] != b["loss"]:
            return a["step"]
    if len(curve) != len(ref_curve):
        return min(len(curve), len(ref_curve)) + 1
    return None


def band_checks(results: dict, bands: dict) -> list[dict]:
    """One check per quantity: its value, the band, in or out, and the distance outside."""
    checks = [_check("eval_loss", "eval_loss", results["eval_loss"], bands["eval_loss"])]
    for name, b in sorted(bands["metrics"].items()):
        value = (results["metrics"].get(name) or {}).get("value")
        checks.append(_check("metric", name, value, b))
    by_step = {p["step"]: p["loss"] for p in results["loss_curve"]}
    for b in bands["loss_curve"]:
        checks.append(_check("loss", f"loss[step {b['step']}]", by_step.get(b["step"]), b, step=b["step"]))
    return checks


def _check(kind: str, name: str, value, b: dict, **extra) -> dict:
    return {"kind": kind, "name": name, "value": value, "low": b["low"], "high": b["high"], "center": b["center"],
            "in_band": reference.in_band(value, b), "distance": reference.distance(value, b), **extra}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def band_causes(checks: list[dict], results: dict, ref: dict) -> list[dict]:
    """One cause per metric out of band; the loss curve as one cause (first and worst step)."""
    out = [_cause("band", c["name"], f"{c['name']} {_fmt(c['value'])} is outside the band "
                  f"[{_fmt(c['low'])}, {_fmt(c['high'])}] by {_fmt(c['distance'])}", BAND_MEANING, "mismatch",
                  value=c["value"], band=[c["low"], c["high"]], distance=c["distance"])
           for c in checks if c["kind"] != "loss" and not c["in_band"]]
    loss_out = [c for c in checks if c["kind"] == "loss" and not c["in_band"]]
    if loss_out:
        first = loss_out[0]
        worst = max(loss_out, key=lambda c: c["distance"] if c["distance"] is not None else float("inf"))
        total = sum(1 for c in checks if c["kind"] == "loss")
        out.append(_cause("band", "loss_curve", f"loss curve: {len(loss_out)} of {total} steps outside the band; "
                          f"first step {first['step']}: {_fmt(first['value'])} not in [{_fmt(first['low'])}, "
                          f"{_fmt(first['high'])}]; worst step {worst['step']}: by {_fmt(worst['distance'])}",
                          BAND_MEANING, "mismatch", steps=[c["step"] for c in loss_out], value=worst["value"],
                          band=[worst["low"], worst["high"]], distance=worst["distance"]))
    n_run, n_ref = len(results["loss_curve"]), len(ref["bands"]["loss_curve"])
    if n_run != n_ref:
        out.append(_cause("band", "steps", f"steps {n_ref} -> {n_run}", STEPS_MEANING, "mismatch",
                          reference=n_ref, run=n_run))
    return out
