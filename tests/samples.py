"""Made-up run results and references for the verify and report tests (no training needed)."""

from __future__ import annotations

import copy

from kit.verify import reference

SHA = {k: c * 64 for k, c in (("recipe", "1"), ("dataset", "2"), ("tokenizer", "3"), ("base_model", "4"))}
HARDWARE = {"device_type": "cpu", "cpu_arch": "x86_64", "cpu_isa": "avx2", "nodes": 1, "world_size": 1,
            "deterministic": True, "cpu_threads": 2}
SOFTWARE = {"python": "3.11.7", "kwanzaa-kit": "0.1.0", "torch": "2.13.0+cpu", "transformers": "5.17.0",
            "peft": "0.21.2", "lock_sha256": "7" * 64, "cuda": None}
METRIC_NAMES = ("citation_accuracy", "parse_rate", "refusal_recall")


def sample_results(seed: int = 42, shift: float = 0.0) -> dict:
    """What reference.run_results returns for one run, made up; `shift` moves every loss by that share."""
    return {
        "seed": seed, "recipe_name": "tiny", "inputs": dict(SHA),
        "input_details": {"recipe": {"seed": seed, "training": {"learning_rate": 0.002, "epochs": 1}},
                          "dataset": {"train": "5" * 64, "eval": "6" * 64}},
        "environment": {"hardware": dict(HARDWARE), "software": dict(SOFTWARE), "driver": None,
                        "hardware_sha256": "h" * 64, "software_sha256": "s" * 64},
        "outputs": {"adapter_sha256": f"{seed:064d}", "adapter_files": {"adapter_model.safetensors": "a" * 64},
                    "train_log_sha256": f"{seed + 1:064d}", "eval_responses_sha256": f"{seed + 2:064d}",
                    "eval_metrics_sha256": f"{seed + 3:064d}"},
        "eval_loss": 2.0 * (1 + shift),
        "metrics": {"citation_accuracy": {"value": None, "numerator": 0, "denominator": 0},
                    "parse_rate": {"value": 0.5, "numerator": 4, "denominator": 8},
                    "refusal_recall": {"value": 0.25, "numerator": 1, "denominator": 4}},
        "loss_curve": [{"step": s, "loss": (3.0 - 0.5 * s) * (1 + shift)} for s in (1, 2, 3)],
    }


def sample_reference(own: dict | None = None) -> dict:
    """A reference from the recipe's seed run plus four seeds spread +-2% around it."""
    own = own or sample_results()
    seeds = [own]
    for seed, shift in ((1, -0.02), (2, -0.01), (3, 0.01), (4, 0.02)):
        other = copy.deepcopy(own)
        other["seed"] = seed
        other["outputs"]["adapter_sha256"] = f"{seed:064d}"
        other["eval_loss"] = own["eval_loss"] * (1 + shift)
        other["loss_curve"] = [{**p, "loss": p["loss"] * (1 + shift)} for p in own["loss_curve"]]
        seeds.append(other)
    return reference.build(seeds, own["seed"], "recipes/tiny.yaml", "test", [])
