"""Two scorings side by side (e.g. the base model alone vs base + adapter)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from kit import io, rundir
from kit.errors import DataError
from kit.evaluate.score import METRICS_SCHEMA, TARGETS, fraction


def read_metrics(path: Path) -> dict:
    """A metrics JSON file, or RUN_DIR/eval/metrics.json when `path` is a folder."""
    file = path / "eval" / "metrics.json" if path.is_dir() else path
    obj = io.read_json(file, DataError, "metrics file",
                         "pass a metrics JSON (kit eval --output) or a run dir that holds eval/metrics.json",
                         "re-run kit eval --output")
    if not isinstance(obj, dict) or obj.get("schema") != METRICS_SCHEMA or not isinstance(obj.get("metrics"), dict):
        raise DataError(f"not a {METRICS_SCHEMA} metrics file", where=str(file), fix="re-run kit eval --output")
    for name, m in obj["metrics"].items():
        cov = (m or {}).get("by_persona") if isinstance(m, dict) and name == "citation_coverage" else None
        for label, part in [(name, m), *((f"{name}.by_persona.{p}", v) for p, v in _items(cov))]:
            if part is not None:
                rundir.require(part if isinstance(part, dict) else {}, {"numerator": int, "denominator": int,
                                                                        "meets_target?": bool},
                               str(file), f"metrics.{label}", fix="re-run kit eval --output", error=DataError)
    return obj


def _items(obj) -> list:
    return list(obj.items()) if isinstance(obj, dict) else []


def _exact(m: dict | None) -> Fraction | None:
    if not m or not m.get("denominator"):
        return None
    return Fraction(m["numerator"], m["denominator"])


def compare(a: dict, b: dict) -> dict:
    """Side by side, per metric (and per persona coverage): a, b, delta = b - a, and whether b
    is better, worse or the same given the metric's direction (lower is better for hallucination)."""
    pairs = [(name, name, a["metrics"].get(name), b["metrics"].get(name)) for name in TARGETS]
    cov_a = (a["metrics"].get("citation_coverage") or {}).get("by_persona", {})
    cov_b = (b["metrics"].get("citation_coverage") or {}).get("by_persona", {})
    pairs += [(f"citation_coverage[{p}]", "citation_coverage", cov_a.get(p), cov_b.get(p))
              for p in sorted(set(cov_a) | set(cov_b))]
    out = {}
    for key, name, ma, mb in pairs:
        fa, fb = _exact(ma), _exact(mb)
        delta = None if fa is None or fb is None else fb - fa
        sign = 1 if TARGETS[name][0] == ">=" else -1
        change = None if delta is None else "same" if delta == 0 else "better" if delta * sign > 0 else "worse"
        side = {s: {**fraction(m["numerator"], m["denominator"]), "meets_target": m.get("meets_target")}
                if m else None for s, m in (("a", ma), ("b", mb))}
        out[key] = {**side, "delta": None if delta is None else float(delta), "change": change,
                    "target": {"op": TARGETS[name][0], "percent": TARGETS[name][1]}}
    return out
