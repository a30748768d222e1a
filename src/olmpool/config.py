"""Workflow configuration validation (JSON schema), with messages that say what to fix."""

from __future__ import annotations

from pathlib import Path

import yaml

from olmpool import OlmPoolError


class ConfigError(OlmPoolError):
    """The workflow configuration does not match its schema."""


def validate_config(config: dict, schema_path: Path, source: str = "config") -> dict:
    """Validate `config` against a JSON schema (YAML file); raise ConfigError on the first error.

    The message names the key path, what is wrong and the allowed keys/types.
    """
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if not errors:
        return config
    e = errors[0]
    where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
    if e.validator == "additionalProperties":
        allowed = sorted((e.schema.get("properties") or {}).keys())
        extra = sorted(set(e.instance) - set(allowed))
        msg = f"{source}: unknown key(s) {extra} at {where}. Fix: remove or rename them; allowed keys are {allowed}"
    elif e.validator == "required":
        msg = f"{source}: {e.message} at {where}. Fix: add the key (see {schema_path})"
    elif e.validator == "type":
        desc = e.schema.get("description", "")
        msg = f"{source}: key '{where}' has value {e.instance!r}, which is not of type {e.validator_value}. Fix: give a {e.validator_value}" + (f" ({desc})" if desc else "")
    else:
        msg = f"{source}: key '{where}': {e.message}. Fix: see {schema_path}"
    if len(errors) > 1:
        msg += f" ({len(errors) - 1} more error(s) after this one)"
    raise ConfigError(msg)


def expose_cli_on_path() -> None:
    """Put the running interpreter's bin directory first on PATH (for Snakemake shell rules).

    `.venv/bin/snakemake` runs without the venv being activated; its shell commands must
    still find the `olmpool` entry point installed beside that interpreter.
    """
    import os
    import sys

    bindir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir, *parts])
