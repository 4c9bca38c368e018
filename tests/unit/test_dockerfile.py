"""The kubetensor image's Dockerfile agrees with the repository it builds.

No container engine runs here, so the image itself is not built by the suite. What can drift is checked
instead: every component command the operator and the chart give a kubetensor container names a module
the package ships; the Dockerfile copies what the package needs and the build context keeps it; and the
install is held to ``requirements/lock.txt``, which pins every runtime dependency of the package; the
native module is built in a Rust stage new enough for its crate and installed in the image.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _commands() -> set[str]:
    """Modules run as ``python -m X`` by the operator's children and the chart's templates."""
    found: set[str] = set()
    desired = (ROOT / "operator/kubetensor_operator/desired.py").read_text()
    found.update(re.findall(r'"python",\s*"-m",\s*"([\w.]+)"', desired))
    for template in (ROOT / "charts/kubetensor/templates").glob("*.yaml"):
        found.update(re.findall(r"\[python,\s*-m,\s*([\w.]+)\]", template.read_text()))
    return found


def test_component_commands_name_modules_the_package_ships() -> None:
    commands = _commands()
    assert {"kubetensor_operator", "kubetensor.miner", "kubetensor.validator"} <= commands
    for module in sorted(commands):
        assert importlib.util.find_spec(module) is not None, f"{module} is run in a pod but not shipped"
        listed = re.search(rf"python -m {re.escape(module)}`", DOCKERFILE)
        assert listed, f"the Dockerfile's header does not list {module}"


def test_dockerfile_copies_what_the_package_is_built_from() -> None:
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE, flags=re.MULTILINE))
    sources = {path for line in copied for path in line.split()}
    for needed in ("pyproject.toml", "README.md", "services", "operator", "requirements/lock.txt"):
        assert needed in sources, f"the Dockerfile does not copy {needed}"
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not (sources & ignored), f".dockerignore drops what the Dockerfile copies: {sources & ignored}"


def test_image_install_is_held_to_the_lock() -> None:
    assert "--constraint requirements/lock.txt ." in DOCKERFILE
    pins = {
        re.split(r"[=<>\[]", line, maxsplit=1)[0].lower().replace("_", "-")
        for line in (ROOT / "requirements/lock.txt").read_text().splitlines()
        if line and not line.startswith(("#", "-"))
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[=<>\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, f"runtime dependency {name} has no pin in requirements/lock.txt"


def test_image_builds_and_installs_the_native_module() -> None:
    stage = re.search(r"^FROM rust:(\d+)\.(\d+)-\S+ AS native$", DOCKERFILE, flags=re.MULTILINE)
    assert stage, "the Dockerfile has no `FROM rust:<version>-... AS native` stage"
    crate = tomllib.loads((ROOT / "services/native/Cargo.toml").read_text())["package"]
    needed = tuple(int(part) for part in crate["rust-version"].split(".")[:2])
    assert (int(stage[1]), int(stage[2])) >= needed, f"the Rust image is older than rust-version {needed}"
    assert "COPY services/native services/native" in DOCKERFILE
    assert re.search(r"pip wheel .*-w /wheels \./services/native$", DOCKERFILE, flags=re.MULTILINE)
    assert "COPY --from=native /wheels /wheels" in DOCKERFILE
    assert re.search(r"pip install .*/wheels/kubetensor_native-\*\.whl$", DOCKERFILE, flags=re.MULTILINE)
