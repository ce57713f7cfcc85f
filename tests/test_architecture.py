"""The house: imports flow one way through the pipeline's stages, the picture in the docs is the
real one, modules stay small, and the repository holds the product (no binaries, no diary)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import import_graph


def test_imports_flow_down_the_pipeline_with_no_cycle():
    assert import_graph.problems(import_graph.graph()) == []


def test_a_module_that_imports_upward_is_caught(monkeypatch):
    g = import_graph.graph()
    g["data"] = g["data"] | {"train"}
    assert any("kit.data" in p and "kit.train" in p for p in import_graph.problems(g))
    assert import_graph.cycles({"kit.a": {"kit.b"}, "kit.b": {"kit.a"}}) == [["kit.a", "kit.b", "kit.a"]]


def test_the_architecture_doc_shows_the_real_import_graph():
    doc = (REPO / "docs/architecture.md").read_text()
    block = re.search(r"<!-- import-graph:begin -->\n```text\n(.*?)```\n<!-- import-graph:end -->", doc, re.S)
    assert block, "docs/architecture.md lost its import-graph block"
    assert block.group(1) == import_graph.picture(import_graph.graph()), \
        "the picture is stale: paste `python scripts/import_graph.py` into docs/architecture.md"


def test_no_module_of_the_kit_is_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "kit").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def _tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


def test_the_repository_tracks_no_wheel_or_large_binary():
    tracked = _tracked()
    assert [f for f in tracked if f.endswith((".whl", ".tar.gz", ".pt", ".bin"))] == []
    assert [f for f in tracked if (REPO / f).is_file() and (REPO / f).stat().st_size > 5_000_000] == []


def test_docs_and_scripts_describe_the_product_not_how_it_was_made():
    narration = re.compile(r"\bsession ?[0-9]|\bcall [A-D]\b|\bissue ?#?[0-9]+", re.I)
    outside = re.compile(r"(?<![\w./-])(\.\./)?shared/(seed|reference|measurements)\b")  # files not in the repo
    this = Path(__file__).relative_to(REPO).as_posix()
    texts = {f: (REPO / f).read_text("utf-8", errors="ignore") for f in _tracked()
             if not f.startswith("data/") and not f.endswith(".jsonl") and f != this and (REPO / f).is_file()}
    assert [f for f, text in texts.items() if narration.search(text)] == []
    assert [f for f, text in texts.items() if outside.search(text)] == []
