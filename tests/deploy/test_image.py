"""What the container image does, tested without a container engine (none runs here).

The build stage of the ``Dockerfile`` is replayed step by step in a temporary directory: its
ARG and ENV values, WORKDIR, COPY from a build context cut by ``.dockerignore``, and its RUN
commands through ``sh``, with the image's directories (the venv, the work directories) moved
under that temporary directory. The result is a fresh venv made exactly as the image makes
``/opt/venv``: same extras, same pinned versions, a wheel of the source. The service is then
started as the final stage starts it (its ENV, ENTRYPOINT and CMD) and must answer ``/readyz``;
the HEALTHCHECK command must pass against it. The only deviations: the interpreter is the one
the tests run on (the same minor version as the image's), pip may use its cache, and the
service binds 127.0.0.1 on a free port instead of 0.0.0.0:8080.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.cli.helpers import wait_for
from tests.deploy.dockerfile import (
    Instruction,
    dockerignore_admits,
    expand,
    parse_stages,
    read_dockerignore,
)

pytestmark = pytest.mark.timeout(300)  # the build installs every dependency into a new venv

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
START = 60.0  # seconds for a cold service on a busy 2-core machine to become ready
BUILD_STAGE_KEYWORDS = {"FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN"}
#: Build settings the replay leaves out: pip may reuse its cache here (the image turns it off
#: so that no cache ends up in a layer).
NOT_REPLAYED_ENV = {"PIP_NO_CACHE_DIR"}


def stages() -> list[list[Instruction]]:
    return parse_stages(DOCKERFILE.read_text())


def only(stage: list[Instruction], keyword: str) -> Instruction:
    [instruction] = [i for i in stage if i.keyword == keyword]
    return instruction


@dataclass
class ImageReplay:
    """Where the replay put things: container paths map under ``rootfs``."""

    rootfs: Path
    moved: dict[str, str]  # container path -> its place under rootfs
    build_env: dict[str, str]

    def host_path(self, value: str) -> str:
        for container_path in sorted(self.moved, key=len, reverse=True):
            value = value.replace(container_path, self.moved[container_path])
        return value

    @property
    def venv(self) -> Path:
        return Path(self.build_env["VIRTUAL_ENV"])  # set by the replay, already moved


def _build_context(target: Path) -> None:
    """The files ``docker build .`` would send: the tracked and new files .dockerignore admits."""
    patterns = read_dockerignore((ROOT / ".dockerignore").read_text())
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for relative in listed:
        source = ROOT / relative
        if source.is_file() and dockerignore_admits(patterns, relative):
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)


def _container_paths(all_stages: list[list[Instruction]]) -> set[str]:
    """The image's own directories: the venv and every WORKDIR."""
    paths = set()
    for stage in all_stages:
        for instruction in stage:
            if instruction.keyword == "WORKDIR":
                paths.add(instruction.arguments)
            if instruction.keyword == "ENV" and "VIRTUAL_ENV" in instruction.assignments():
                paths.add(instruction.assignments()["VIRTUAL_ENV"])
    return paths


def _base_path(scratch: Path) -> str:
    """The base image's PATH: ``python`` is the interpreter the tests run on (its base, not the
    dev venv), then the system's tools for ``sh``, ``mkdir`` and ``touch``."""
    bin_dir = scratch / "base-bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys._base_executable)  # type: ignore[attr-defined]
    return f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"


def _replay_build_stage(stage: list[Instruction], replay: ImageReplay, context: Path) -> None:
    env = replay.build_env
    workdir = replay.rootfs
    for instruction in stage[1:]:
        assert instruction.keyword in BUILD_STAGE_KEYWORDS, (
            f"{instruction.keyword} in the build stage: tests/deploy/test_image.py cannot "
            "replay it; teach it or keep the build stage to " + ", ".join(BUILD_STAGE_KEYWORDS)
        )
        if instruction.keyword in ("ARG", "ENV"):
            for name, value in instruction.assignments().items():
                if name not in NOT_REPLAYED_ENV:
                    env[name] = expand(replay.host_path(value), env)
        elif instruction.keyword == "WORKDIR":
            workdir = Path(replay.host_path(instruction.arguments))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            *sources, destination = instruction.arguments.split()
            assert not any(s.startswith("--") for s in sources), instruction
            for source in sources:  # a directory's contents go to the destination
                target = workdir / destination
                if (context / source).is_dir():
                    shutil.copytree(context / source, target, dirs_exist_ok=True)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(context / source, target / Path(source).name)
        else:  # RUN, as Docker runs the shell form: /bin/sh -c
            command = replay.host_path(instruction.arguments)
            done = subprocess.run(
                ["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"RUN {command}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageReplay]:
    scratch = tmp_path_factory.mktemp("image")
    all_stages = stages()
    rootfs = scratch / "rootfs"
    rootfs.mkdir()  # the container's / : where RUN starts before any WORKDIR
    moved = {path: str(rootfs) + path for path in _container_paths(all_stages)}
    build_env = {**os.environ, "PATH": _base_path(scratch)}
    replay = ImageReplay(rootfs, moved, build_env)
    context = scratch / "context"
    context.mkdir()
    _build_context(context)
    _replay_build_stage(all_stages[0], replay, context)
    yield replay
    shutil.rmtree(scratch, ignore_errors=True)  # hundreds of MB: not kept for later runs


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _runtime_env(replay: ImageReplay, port: int) -> dict[str, str]:
    """The final stage's ENV over a clean environment (no cio-relay or Customer.io settings
    of the machine running the tests)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CUSTOMERIO_", "CIO_RELAY_")) and k != "PATH"
    }
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    for instruction in stages()[-1]:
        if instruction.keyword == "ENV":
            for name, value in instruction.assignments().items():
                env[name] = expand(replay.host_path(value), env)
    # Bind loopback only (tests never listen on every interface), on a port free here.
    assert env["CIO_RELAY_HOST"] == "0.0.0.0"
    env.update(CIO_RELAY_HOST="127.0.0.1", CIO_RELAY_PORT=str(port))
    return env


def test_the_image_venv_holds_the_package_without_dev_tools(image: ImageReplay) -> None:
    assert "dev" not in image.build_env["CIO_RELAY_EXTRAS"].split(",")
    python = image.venv / "bin" / "python"
    probe = "import importlib.util as u; print(u.find_spec('pytest'), u.find_spec('duckdb'))"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.split()[0] == "None", "a dev tool (pytest) is in the image"
    assert found.stdout.split()[1] != "None", "the lake extra (duckdb) is missing"
    # Installed from a wheel, not editable: every non-Python file of the package is inside.
    site = subprocess.run(
        [python, "-c", "import cio_relay, os; print(os.path.dirname(cio_relay.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(site).is_relative_to(image.venv)
    package = ROOT / "src" / "cio_relay"
    data_files = {
        path.relative_to(package)
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    }
    assert data_files, "the package has no data files to look for"
    missing = sorted(str(p) for p in data_files if not (Path(site) / p).is_file())
    assert not missing, f"not in the installed package: {missing}"


def test_every_package_in_the_image_is_pinned(image: ImageReplay) -> None:
    frozen = subprocess.run(
        [image.venv / "bin" / "pip", "freeze", "--exclude", "cio-relay"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    pins = {
        line.strip().lower().replace("_", "-")
        for line in (ROOT / "image-constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    unpinned = sorted(p for p in frozen if p.lower().replace("_", "-") not in pins)
    assert not unpinned, f"run scripts/image-constraints.sh: not pinned as installed: {unpinned}"


def test_the_image_command_serves_until_ready_and_its_healthcheck_passes(
    image: ImageReplay, tmp_path: Path
) -> None:
    final = stages()[-1]
    argv = only(final, "ENTRYPOINT").exec_form() + only(final, "CMD").exec_form()
    assert argv == ["cio-relay", "run"]
    port = _free_port()
    env = _runtime_env(image, port)
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable is not None and Path(executable).is_relative_to(image.venv)
    workdir = Path(image.host_path(only(final, "WORKDIR").arguments))
    workdir.mkdir(parents=True, exist_ok=True)
    with (tmp_path / "out.log").open("w+") as out:
        service = subprocess.Popen(
            [executable, *argv[1:]], cwd=workdir, env=env, stdout=out, stderr=out
        )
        try:
            base = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                if service.poll() is not None:
                    return True  # exited: the assertion below shows why
                try:
                    return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            assert wait_for(ready, START) and service.poll() is None, _log(out)
            healthcheck = only(final, "HEALTHCHECK").exec_form()
            checked = subprocess.run(
                healthcheck, cwd=workdir, env=env, capture_output=True, text=True, timeout=30
            )
            assert checked.returncode == 0, checked.stderr
            # The data directory the image sets is where the service keeps its files.
            assert (Path(env["CIO_RELAY_DATA_DIR"]) / "outbox.db").is_file()
        finally:
            service.terminate()  # what `docker stop` sends first
            code = service.wait(START)
        assert code == 0, _log(out)


def test_the_worker_command_exists_in_the_image(image: ImageReplay) -> None:
    entrypoint = only(stages()[-1], "ENTRYPOINT").exec_form()
    cio_relay = image.venv / "bin" / entrypoint[0]
    done = subprocess.run([cio_relay, "worker", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "Deliver the outbox" in done.stdout


def _log(out: IO[str]) -> str:
    out.seek(0)
    return out.read()


def test_the_dockerfile_pins_its_base_and_runs_unprivileged() -> None:
    build, final = stages()
    bases = {stage[0].arguments.split()[0] for stage in (build, final)}
    assert len(bases) == 1, f"one base image for both stages: {bases}"
    [base] = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), f"not pinned to a release: {base}"
    user = only(final, "USER").arguments.split(":")
    assert all(part.isdigit() and int(part) != 0 for part in user), "a numeric, non-root USER"
    assert "/healthz" in " ".join(only(final, "HEALTHCHECK").exec_form())
