"""Where the settings come from, for ``cio-relay config check``: each field's variable, the
layer that set its value (environment, profiles file, default), what in the profiles file is
not a setting, and whether the process runs on Cloud Run."""

from __future__ import annotations

import os
import tomllib

from pydantic import AliasChoices

from cio_relay.config import ENVIRONMENTS, Settings, profile_file, profile_layers

__all__ = ["environment_variable", "on_cloud_run", "profile_problems", "setting_sources"]


def on_cloud_run() -> bool:
    """Whether this process runs on Cloud Run, whose disk is memory that goes with the
    instance: Cloud Run sets ``K_SERVICE`` in services and ``CLOUD_RUN_JOB`` in jobs."""
    return bool(os.environ.get("K_SERVICE") or os.environ.get("CLOUD_RUN_JOB"))


def environment_variable(field_name: str) -> str:
    """The variable that sets a field (its first alias), e.g. ``CUSTOMERIO_SITE_ID``."""
    alias = Settings.model_fields[field_name].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


def setting_sources() -> dict[str, str]:
    """Where each field's value comes from, as ``Settings()`` reads them now: ``environment``,
    the profiles file (``cio-relay.toml [staging]`` or ``cio-relay.toml``) or ``default``."""
    variables = {name.upper() for name, value in os.environ.items() if value}
    path = profile_file()
    top, env_name, table = profile_layers(path) if path else ({}, "", {})
    sources = {}
    for name in Settings.model_fields:
        if environment_variable(name).upper() in variables:
            sources[name] = "environment"
        elif name in table:
            sources[name] = f"{path} [{env_name}]"
        elif name in top:
            sources[name] = str(path)
        else:
            sources[name] = "default"
    return sources


def profile_problems() -> list[str]:
    """What the profiles file holds that is not a setting (a misspelt key would otherwise be
    ignored, leaving its default in force), or a table that names no environment."""
    path = profile_file()
    if path is None:
        return []
    document = tomllib.loads(path.read_text())
    problems = []
    for key, value in document.items():
        if isinstance(value, dict):
            if key not in ENVIRONMENTS:
                problems.append(
                    f"{path}: [{key}] is not an environment ({', '.join(ENVIRONMENTS)})"
                )
            problems += [
                f"{path}: [{key}] {name} is not a setting"
                for name in value
                if name not in Settings.model_fields
            ]
        elif key not in Settings.model_fields:
            problems.append(f"{path}: {key} is not a setting")
    return problems
