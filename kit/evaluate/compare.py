"""Two scorings side by side (e.g. the base model alone vs base + adapter)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from kit import io
from kit.errors import DataError
from kit.evaluate.responses import printable
from kit.evaluate.score import METRICS_SCHEMA, TARGETS, fraction


def read_metrics(path: Path) -> dict:
    """A metrics JSON file, or RUN_DIR/eval/metrics.json when `path` is a folder; every fraction
    compare reads is checked, so a hand-edited file is one error, never a traceback."""
    file = path / "eval" / "metrics.json" if path.is_dir() else path
    obj = io.read_json(file, DataError, "metrics file",
                         "pass a metrics JSON (kit eval --output) or a run dir that holds eval/metrics.json",
                         "re-run kit eval --output")
    if not isinstance(obj, dict) or obj.get("schema") != METRICS_SCHEMA or not isinstance(obj.get("metrics"), dict):
        raise DataError(f"not a {METRICS_SCHEMA} metrics file", where=str(file), fix="re-run kit eval --output")
    for name in TARGETS:
        m = obj["metrics"].get(name)
        _check_fraction(m, f"metrics.{name}", file)
        personas = (m or {}).get("by_persona", {})
        if not isinstance(personas, dict):
            raise DataError(f"metrics.{name}.by_persona is not an object", where=str(file),
                            fix="re-run kit eval --output")
        for persona, p in personas.items():
            _check_fraction(p, f"metrics.{name}.by_persona.{persona}", file)
    return printable(obj)


def _check_fraction(m, key: str, file: Path) -> None:
    """Absent (no data), or integers 0 <= numerator <= denominator and a true/false/null verdict."""
    if m is None:
        return
    ints = isinstance(m, dict) and all(isinstance(m.get(k), int) and not isinstance(m.get(k), bool)
                                       and m[k] >= 0 for k in ("numerator", "denominator"))
    if not ints or m["numerator"] > m["denominator"] or m.get("meets_target") not in (True, False, None):
        raise DataError(f"{printable(key)} is not a fraction (0 <= numerator <= denominator, meets_target)",
                        where=str(file), fix="re-run kit eval --output")


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
