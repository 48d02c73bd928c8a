"""Just enough of a Dockerfile and a .dockerignore reader for the image tests.

A Dockerfile here is a list of stages, each a list of ``Instruction`` (keyword, arguments with
the line continuations joined). The ``.dockerignore`` reader follows Docker's rules for the
patterns we use: the last pattern that matches a path or one of its parent directories decides,
and ``!`` lets a path back in.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT, CMD or HEALTHCHECK ... CMD."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + len("CMD") :]
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(part, str) for part in value)
        return value

    def assignments(self) -> dict[str, str]:
        """``ENV a=1 b=2`` or ``ARG name=default`` as a dict (unexpanded)."""
        pairs = {}
        for word in shlex.split(self.arguments):
            name, _, value = word.partition("=")
            pairs[name] = value
        return pairs


def parse_stages(text: str) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for line in _logical_lines(text):
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{line!r} before the first FROM"
        stages[-1].append(instruction)
    return stages


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return lines


def expand(value: str, variables: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` as Docker expands them in ENV, WORKDIR and COPY."""
    return re.sub(
        r"\$(?:\{(\w+)\}|(\w+))",
        lambda match: variables.get(match.group(1) or match.group(2), ""),
        value,
    )


def dockerignore_admits(patterns: list[str], path: str) -> bool:
    """Whether ``path`` (relative, with /) reaches the build context."""
    candidates = [path, *(str(parent) for parent in PurePosixPath(path).parents)][:-1]
    admitted = True
    for pattern in patterns:
        exception = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates):
            admitted = exception
    return admitted


def read_dockerignore(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
