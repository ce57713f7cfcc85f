"""Reference results: what a recipe gave on one hardware class, and the band a reproduction must hit.

A reference file (`references/<recipe>/<hardware-class-slug>.json`, schema kwanzaa-kit.reference.v1)
holds, from real runs of `scripts/make_references.py`:
- the recipe's own seed run: its inputs, environment, output hashes, metrics and loss curve
  (what a bit-exact reproduction must equal);
- the same numbers for >= 5 seeds, and the band derived from them per quantity (eval loss,
  every metric, every loss-curve point), which an `equivalent` reproduction must stay inside.

The band rule (VERIFY.md says the same):
    center     = olympic mean of the n seed values (drop one min and one max; MLPerf RCP)
    spread     = t(0.975, n-1) * sd * sqrt(1 + 1/n)   (95% prediction interval for ONE new run)
    half_width = max(spread, floor)
    floor      = losses: max(0.1% of |center|, 1e-4)   fractions: 1/denominator (one eval item)
The prediction interval asks "could one more run come from the seeds' distribution?", not "is
the mean the same" (that would be sqrt(1/n), too narrow for a single run). The floor keeps a band
from collapsing when the seeds happen to agree (a metric stuck at 0, a short run): a metric
cannot move by less than one item, and 0.1% of a loss is ~8x the drift measured between two
non-deterministic H100 runs after 4-6 steps (1.3e-4 relative), 70x below
a 7% loss-normalisation change.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from kit import io, rundir
from kit.errors import ReferenceFileError, RunDirError

SCHEMA = "kwanzaa-kit.reference.v1"
INPUT_KEYS = ("recipe", "dataset", "tokenizer", "base_model")
OUTPUT_KEYS = ("adapter_sha256", "train_log_sha256", "eval_responses_sha256", "eval_metrics_sha256")
MIN_SEEDS = 5
LOSS_RTOL, LOSS_ATOL = 0.001, 1e-4
REFERENCES_ENV = "KWANZAA_KIT_REFERENCES"  # tests point this at a folder of their own
RULE = {
    "center": "olympic mean of the seed values (one min and one max dropped when n >= 5)",
    "spread": "t(0.975, n-1) * sd * sqrt(1 + 1/n): a 95% prediction interval for one new run",
    "half_width": "max(spread, floor)",
    "floor_loss": f"max({LOSS_RTOL} * |center|, {LOSS_ATOL})",
    "floor_fraction": "1 / denominator: one eval item (the smallest denominator of the seeds)",
    "min_seeds": MIN_SEEDS,
}

# Two-sided 95% Student t quantiles t(0.975, df), df = 1..30.
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788,
         2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639,
         2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


# ---- the band rule ---------------------------------------------------------------------------

def t975(df: int) -> float:
    """t(0.975, df): the table up to 30, then the Cornish-Fisher expansion (error < 1e-4)."""
    if df < 1:
        raise ValueError("t needs at least one degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def olympic_mean(values: list[float]) -> float:
    """Mean without the single lowest and highest value (MLPerf RCP); plain mean below 5 values."""
    xs = sorted(values)
    if len(xs) >= 5:
        xs = xs[1:-1]
    return sum(xs) / len(xs)


def sample_sd(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))


def band(values: list[float | None], floor: float, bounds: tuple[float, float] | None = None) -> dict:
    """The accepted interval for one quantity, from its value in each seed run (None = no data)."""
    xs = [float(v) for v in values if v is not None]
    no_data = len(values) - len(xs)
    if not xs:
        return {"center": None, "low": None, "high": None, "half_width": None, "n": 0, "no_data_seeds": no_data}
    n, center, sd = len(xs), olympic_mean(xs), sample_sd(xs)
    spread = t975(n - 1) * sd * math.sqrt(1 + 1 / n) if n >= 2 else 0.0
    half = max(spread, floor)
    low, high = center - half, center + half
    if bounds:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"center": center, "low": low, "high": high, "half_width": half, "spread": spread, "floor": floor,
            "sd": sd, "n": n, "no_data_seeds": no_data}


def loss_floor(values: list[float | None]) -> float:
    xs = [v for v in values if v is not None]
    return max(LOSS_RTOL * abs(olympic_mean(xs)), LOSS_ATOL) if xs else LOSS_ATOL


def fraction_floor(denominators: list[int | None]) -> float:
    dens = [d for d in denominators if d]
    return 1.0 / min(dens) if dens else 0.0


def in_band(value: float | None, b: dict) -> bool:
    """Inside the closed interval; no data is in band only where some seed also had none."""
    if value is None:
        return b["n"] == 0 or b["no_data_seeds"] > 0
    if b["n"] == 0:
        return False
    return b["low"] <= value <= b["high"]


def distance(value: float | None, b: dict) -> float | None:
    """How far outside the band (0 inside); None where one side has no number."""
    if value is None or b["n"] == 0:
        return None
    return max(b["low"] - value, value - b["high"], 0.0)


def derive_bands(seed_results: list[dict]) -> dict:
    """Bands for eval loss, every metric and every loss-curve step, from >= 5 seed runs."""
    if len(seed_results) < MIN_SEEDS:
        raise ValueError(f"a band needs >= {MIN_SEEDS} seed runs, got {len(seed_results)}")
    lengths = {len(r["loss_curve"]) for r in seed_results}
    if len(lengths) != 1:
        raise ValueError(f"the seed runs logged different numbers of steps: {sorted(lengths)}")
    losses = [r["eval_loss"] for r in seed_results]
    metrics = {}
    for name in sorted(set().union(*(r["metrics"] for r in seed_results))):
        ms = [r["metrics"].get(name) or {} for r in seed_results]
        metrics[name] = band([m.get("value") for m in ms], fraction_floor([m.get("denominator") for m in ms]),
                             (0.0, 1.0))
    curve = []
    for i, point in enumerate(seed_results[0]["loss_curve"]):
        vals = [r["loss_curve"][i]["loss"] for r in seed_results]
        curve.append({"step": point["step"], **band(vals, loss_floor(vals))})
    return {"rule": RULE, "eval_loss": band(losses, loss_floor(losses)), "metrics": metrics, "loss_curve": curve}


# ---- what a run gave -------------------------------------------------------------------------

def run_results(run: Path) -> dict:
    """Everything a reference or a verification compares, read from a complete, evaluated run."""
    manifest = rundir.read_manifest(run, complete=True)
    metrics_path = run / rundir.EVAL / "metrics.json"
    if not metrics_path.is_file():
        raise RunDirError("the run has not been evaluated (no eval/metrics.json)", where=str(run),
                          fix=f"evaluate it first: `kit eval {run}`")
    scored = rundir.read_metrics(metrics_path)
    outputs = manifest["outputs"]
    return {
        "seed": manifest["determinism"]["seed"],
        "recipe_name": manifest["recipe_name"],
        "inputs": {k: manifest["inputs"][k]["sha256"] for k in INPUT_KEYS},
        "input_details": _input_details(run, manifest),
        "environment": manifest["inputs"]["environment"],
        "outputs": {"adapter_sha256": outputs.get("adapter", {}).get("sha256"),
                    "adapter_files": outputs.get("adapter", {}).get("files", {}),
                    **{f"{k}_sha256": outputs.get(k, {}).get("sha256")
                       for k in ("train_log", "eval_responses", "eval_metrics")}},
        "eval_loss": (scored.get("eval_loss") or {}).get("loss"),
        "metrics": {name: {k: m.get(k) for k in ("value", "numerator", "denominator")}
                    for name, m in sorted(scored.get("metrics", {}).items())},
        "loss_curve": _loss_curve(run / rundir.TRAIN_LOG),
    }


def _input_details(run: Path, manifest: dict) -> dict:
    """What lets verify say *which* part of an input differs: the resolved recipe, each data file."""
    recipe = run / rundir.RECIPE
    dataset = manifest["inputs"]["dataset"]
    return {"recipe": rundir.read_json(recipe, "recipe.json") if recipe.is_file() else None,
            "dataset": {part: dataset.get(part, {}).get("sha256") for part in ("train", "eval")}}


def _loss_curve(log: Path) -> list[dict]:
    return [{"step": r["step"], "loss": r["loss"]} for r in rundir.read_step_log(log)]


# ---- the reference file ----------------------------------------------------------------------

def hardware_slug(hw: dict) -> str:
    """File name of a hardware class: cpu-x86_64-avx2-w1-t2-det, cuda-nvidia-h200-cc9.0-w1-t16-det
    (nodes shown when more than one)."""
    mode = "det" if hw.get("deterministic") else "nondet"
    nodes = f"-n{hw['nodes']}" if (hw.get("nodes") or 1) > 1 else ""
    tail = f"{nodes}-w{hw['world_size']}-t{hw['cpu_threads']}-{mode}"
    if hw["device_type"] == "cpu":
        return "cpu-" + "-".join(_slug(hw.get(k) or "unknown") for k in ("cpu_arch", "cpu_isa")) + tail
    name = _slug(hw.get("device_name") or "unknown")
    cc = f"-cc{hw['compute_capability']}" if hw.get("compute_capability") else ""
    return f"{hw['device_type']}-{name}{cc}{tail}"


def _slug(text) -> str:
    return re.sub(r"[^a-z0-9_.]+", "-", str(text).lower()).strip("-")


def build(seed_results: list[dict], recipe_seed: int, recipe_file: str, command: str, runs: list[dict]) -> dict:
    """The reference of a recipe on this hardware class, from its seed runs (the recipe's seed first)."""
    own = [r for r in seed_results if r["seed"] == recipe_seed]
    if not own:
        raise ValueError(f"the seeds must include the recipe's own seed {recipe_seed}")
    own = own[0]
    env = own["environment"]
    for r in seed_results:
        for part in ("hardware", "software"):
            if r["environment"][part] != env[part]:
                raise ValueError(f"seed {r['seed']} ran on another {part} than seed {recipe_seed}")
        for key in ("dataset", "tokenizer", "base_model"):
            if r["inputs"][key] != own["inputs"][key]:
                raise ValueError(f"seed {r['seed']} has another {key} than seed {recipe_seed}")
    return {
        "schema": SCHEMA,
        "recipe": {"name": own["recipe_name"], "sha256": own["inputs"]["recipe"], "seed": recipe_seed,
                   "file": recipe_file},
        "hardware_class": env["hardware"],
        "hardware_class_slug": hardware_slug(env["hardware"]),
        "hardware_sha256": env["hardware_sha256"],
        "software": env["software"],
        "software_sha256": env["software_sha256"],
        "lock_sha256": env["software"].get("lock_sha256"),
        "driver": env.get("driver"),
        "cpu": env.get("cpu"),
        "inputs": own["inputs"],
        "input_details": own.get("input_details"),
        "outputs": own["outputs"],
        "results": {k: own[k] for k in ("eval_loss", "metrics", "loss_curve")},
        "seeds": [{k: r[k] for k in ("seed", "eval_loss", "metrics", "loss_curve")}
                  | {"adapter_sha256": r["outputs"]["adapter_sha256"]} for r in seed_results],
        "bands": derive_bands(seed_results),
        "created": {"command": command, "runs": runs, "kit_version": env["software"].get("kwanzaa-kit")},
    }


_NUMBER_OR_NULL = (float, None)
_REQUIRED = {"schema": str, "recipe.name": str, "recipe.sha256": str, "hardware_class": dict, "software": dict,
             "inputs": dict, **{f"inputs.{k}": str for k in INPUT_KEYS}, "outputs": dict,
             **{f"outputs.{k}?": str for k in OUTPUT_KEYS}, "outputs.adapter_sha256": str,
             "outputs.adapter_files?": dict, "input_details?": dict, "results": dict,
             "results.loss_curve": list, "seeds": list, "bands": dict, "bands.eval_loss": dict,
             "bands.metrics": dict, "bands.loss_curve": list}
_BAND = {"center": _NUMBER_OR_NULL, "low": _NUMBER_OR_NULL, "high": _NUMBER_OR_NULL, "n": int, "no_data_seeds": int}


def load(path: Path) -> dict:
    """A reference file, refused (exit 2, naming the file and the field) unless it is a v1 reference
    whose every band is a band: numbers (finite, low <= center <= high), or no data at all."""
    path = Path(path)
    ref = io.read_json(path, ReferenceFileError, "reference file",
                       "pass an existing file, e.g. --reference references/tiny/<class>.json",
                       "restore the file from the repository")
    if not isinstance(ref, dict) or ref.get("schema") != SCHEMA:
        found = ref.get("schema") if isinstance(ref, dict) else None
        raise ReferenceFileError(f"field `schema` is {found!r}, not {SCHEMA!r}", where=str(path),
                                 fix="use a reference written by this kit (scripts/make_references.py)")

    def need(obj, shape, what):
        rundir.require(obj, shape, str(path), what, fix="regenerate the file with scripts/make_references.py",
                       error=ReferenceFileError)

    need(ref, _REQUIRED, "reference")
    if len(ref["seeds"]) < MIN_SEEDS:
        raise ReferenceFileError(f"field `seeds` holds {len(ref['seeds'])} runs, fewer than {MIN_SEEDS}",
                                 where=str(path), fix="regenerate it with --seeds listing at least 5 seeds")
    for i, point in enumerate(ref["results"]["loss_curve"]):
        need(point if isinstance(point, dict) else {}, {"step": int, "loss": float}, f"results.loss_curve[{i}]")
    bands = ref["bands"]
    named = [("bands.eval_loss", bands["eval_loss"])] + [(f"bands.metrics.{k}", b) for k, b in bands["metrics"].items()]
    named += [(f"bands.loss_curve[{i}]", b) for i, b in enumerate(bands["loss_curve"])]
    if not bands["loss_curve"] or not bands["metrics"]:
        empty = "bands.loss_curve" if not bands["loss_curve"] else "bands.metrics"
        raise ReferenceFileError(f"field `{empty}` is empty: nothing to compare a run with", where=str(path),
                                 fix="regenerate the file with scripts/make_references.py")
    for name, b in named:
        need(b if isinstance(b, dict) else {}, {**_BAND, **({"step": int} if "loss_curve" in name else {})}, name)
        numbers = [b[k] for k in ("low", "center", "high")]
        if b["n"] > 0 and (None in numbers or not numbers[0] <= numbers[1] <= numbers[2]):
            raise ReferenceFileError(f"`{name}` is not a band (low {b['low']}, center {b['center']}, high {b['high']})",
                                     where=str(path), fix="regenerate the file with scripts/make_references.py")
    return ref


def references_dir() -> Path:
    """references/ of the checkout the kit is installed from (editable), unless the env says otherwise."""
    return Path(os.environ.get(REFERENCES_ENV) or Path(__file__).resolve().parents[2] / "references")


def locate(recipe_name: str, hardware: dict) -> tuple[Path, bool] | None:
    """(file, same_class): this hardware class's reference, else one of another class (same device
    type first), else None."""
    folder = references_dir() / recipe_name
    own = folder / f"{hardware_slug(hardware)}.json"
    if own.is_file():
        return own, True
    others = sorted(folder.glob("*.json"), key=lambda p: (not p.name.startswith(hardware["device_type"] + "-"), p.name))
    return (others[0], False) if others else None


def checksums_text(files: dict[str, str]) -> str:
    """`sha256sum -c` format: one `<sha256>  <file>` line per file."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))


MAX_CHECKSUMS_BYTES = 1 << 20


def read_checksums(path: Path) -> dict[str, str]:
    """{file: sha256} from a sha256sum file, a {"files": {...}} JSON, or a reference JSON. File names
    are relative to the artifact folder: absolute paths and `..` are refused, and so is a file that
    lists nothing."""
    path = Path(path)
    fix = "pass --checksums references/<recipe>/<class>.checksums.sha256"
    if path.is_file() and path.stat().st_size > MAX_CHECKSUMS_BYTES:
        raise ReferenceFileError(f"checksums file is larger than {MAX_CHECKSUMS_BYTES} bytes", where=str(path), fix=fix)
    text = io.read_text(path, ReferenceFileError, "checksums file", fix)
    if text.lstrip().startswith("{"):
        try:
            obj = io.loads(text)
        except io.JsonProblem as e:
            raise ReferenceFileError(f"not JSON ({e})", where=str(path), fix="restore the file") from None
        files = obj.get("files") or (obj.get("outputs") or {}).get("adapter_files") if isinstance(obj, dict) else None
        if not isinstance(files, dict) or not files:
            raise ReferenceFileError("no `files` (or `outputs.adapter_files`) object", where=str(path),
                                     fix='write {"files": {"<name>": "<sha256>"}}')
        for name, digest in files.items():
            _check_entry(name, digest, str(path))
        return {name: digest.lower() for name, digest in files.items()}
    out: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.strip())
        if not m:
            raise ReferenceFileError("line is not `<sha256>  <file>`", where=f"{path}:{i}",
                                     fix="use the `sha256sum` output format")
        name, digest = m.group(2), m.group(1).lower()
        _check_entry(name, digest, f"{path}:{i}")
        if out.get(name, digest) != digest:
            raise ReferenceFileError(f"{name} is listed twice with different sha256s", where=f"{path}:{i}",
                                     fix="keep one line per file")
        out[name] = digest
    if not out:
        raise ReferenceFileError("the checksums file lists no file: nothing would be checked", where=str(path),
                                 fix="use the `sha256sum` output of the published adapter files")
    return out


def _check_entry(name, digest, where: str) -> None:
    if not isinstance(name, str) or not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        raise ReferenceFileError(f"{str(name)[:80]!r}: not a 64-hex sha256", where=where,
                                 fix="use the `sha256sum` output format")
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\0" in name:
        raise ReferenceFileError(f"{name[:80]!r}: a checksum must name a file inside the artifact folder (no "
                                 "absolute path, no `..`)", where=where, fix="list the artifact's files by their names")
