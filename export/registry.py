"""The MLflow registry follows what the repository serves: alias `champion` on the registered version
that is served, `challenger` on the last one refused, and the model card as each version's description.

An exported model knows its registered version from its source (`models:/finer/3`) or from the
`mlflow.json` training wrote beside it (`model_uri`); a model that was never registered has no
aliases to move, and export says so.
"""
from __future__ import annotations

import json
from pathlib import Path

CHAMPION, CHALLENGER = "champion", "challenger"


def registered(provenance: dict, tracking_uri: str) -> tuple[str, str, str] | None:
    """(tracking URI, registered name, version) of an export's source, None if it was never registered;
    the URI the source was read from, else `tracking_uri`."""
    uri = provenance.get("mlflow", {}).get("model_uri") or provenance.get("model", "")
    if not str(uri).startswith("models:/"):
        return None
    name, _, version = str(uri).removeprefix("models:/").partition("/")
    if not version.isdigit():  # an alias or stage URI names no fixed version
        return None
    return provenance.get("tracking_uri", tracking_uri), name, version


def _client(tracking_uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def mark(provenance: dict, alias: str, tracking_uri: str, description: str = "") -> str:
    """Point `alias` at the source's registered version (and set its description); a line saying what was done."""
    found = registered(provenance, tracking_uri)
    if found is None:
        return f"registry: the source is not a registered model version, no {alias} alias set"
    tracking_uri, name, version = found
    try:
        client = _client(tracking_uri)
        client.set_registered_model_alias(name, alias, version)
        if description:
            client.update_model_version(name, version, description=description)
    except Exception as e:  # an unreachable or read-only store must not undo a written version: say so
        return f"registry: could not set {alias} on models:/{name}/{version} ({type(e).__name__}: {e})"
    return f"registry: models:/{name}/{version} is now {name}@{alias}"


def champion_of(version_folder: Path, tracking_uri: str) -> str:
    """After a rollback: move `champion` to the registered version the repository serves again."""
    record = Path(version_folder) / "export.json"
    if not record.is_file():
        return f"registry: {record} not found, the champion alias was not moved"
    return mark(json.loads(record.read_text()).get("source", {}), CHAMPION, tracking_uri)
