"""Registered models and MLflow model URIs: the one parser, resolver and downloader (light: mlflow-skinny).

    with resolved_bundle("models:/vaexprs@champion") as model:   # model.folder holds bundle.json
        ...                                                     # the download is removed afterwards
    previous = promote("vaexprs", 3, "champion")
    versions = model_versions("vaexprs")

A MODEL is `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/RUN_ID[/PATH]` (a bare run: its `bundle` folder)
or a local bundle folder (or its bundle.json). A folder is read as it is: its own bundle.json, never a search
through subfolders. Downloads go to a temporary folder that is removed when the `with` block ends. Registry
lookups never build filter strings from user text, so a name with quotes cannot break them.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaexprs.errors import InputError, OptionError, VaexprsRuntimeError, first_line
from vaexprs.registry.store import ensure_tracking_uri, local_store_exists, mlflow_client

URI_SCHEMES = ("models:/", "runs:/")
BUNDLE_JSON = "bundle.json"
# where a bundle sits in what MLflow downloads: a bundle folder, a pyfunc model (artifacts/bundle), a run root
BUNDLE_LAYOUTS = ("", "artifacts/bundle", "bundle")
RUN_BUNDLE_PATH = "bundle"  # where `train --track` logs a run's bundle
MAX_NAME_LENGTH = 256
_BAD_NAME = re.compile(r"[/@:\x00-\x1f\x7f]")
# MLflow's rules for an alias; checked before the registry is touched, so the error names the rule rather than
# reading "alias ... not found"
_ALIAS = re.compile(r"[\w-]{1,255}")  # as MLflow: \w is Unicode (café is fine)
# MLflow reserves latest and v<n>; a number would read as models:/NAME/VERSION
_RESERVED_ALIAS = re.compile(r"latest|v\d+|\d+", re.IGNORECASE)


@dataclass(frozen=True)
class ModelUri:
    """A parsed models:/ or runs:/ URI."""

    uri: str
    name: str | None = None  # models:/
    alias: str | None = None
    version: str | None = None
    run_id: str | None = None  # runs:/
    path: str = ""


@dataclass(frozen=True)
class ResolvedModel:
    """A bundle on local disk and where it came from (the URI and registry version, for provenance)."""

    folder: Path
    uri: str
    version: str | None


def is_model_uri(text: str) -> bool:
    return text.startswith(URI_SCHEMES)


def check_model_name(name: str, option: str = "register") -> str:
    """A registered-model name that URIs can carry: no '/', '@', ':' or control characters, at most 256 long."""
    if not name or not name.strip():
        raise OptionError(option, "needs a model name")
    if len(name) > MAX_NAME_LENGTH or _BAD_NAME.search(name):
        raise OptionError(
            option, f"{name!r} is not a usable model name (no '/', '@', ':' or control characters; <= 256 long)"
        )
    return name


def parse_model_uri(uri: str) -> ModelUri:
    """models:/NAME@ALIAS | models:/NAME/VERSION | runs:/RUN_ID[/PATH]; anything else is an InputError."""
    if uri.startswith("models:/"):
        rest = uri[len("models:/") :].strip("/")
        if "@" in rest:
            name, alias = rest.rsplit("@", 1)
            if name and alias and "/" not in alias:
                return ModelUri(uri, name=name, alias=alias)
        else:
            name, _, version = rest.rpartition("/")
            if name and version.isdigit():
                return ModelUri(uri, name=name, version=version)
        raise InputError(f"{uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/") :].strip("/").partition("/")
        if run_id:
            return ModelUri(uri, run_id=run_id, path=path)
        raise InputError(f"{uri!r} is not runs:/RUN_ID/PATH")
    raise InputError(f"{uri!r} is not an MLflow model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/...)")


def _mlflow_error(exc: Exception, what: str) -> Exception:
    """An MLflow failure as a one-line vaexprs error: missing things are the user's (2), the rest runtime (1)."""
    code = getattr(exc, "error_code", "")
    text = first_line(exc)
    if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or "not found" in text.lower():
        return InputError(f"{what} not found at {ensure_tracking_uri()}: {text}")
    if "Max retries" in text or "Connection" in text or "timed out" in text.lower():
        return VaexprsRuntimeError(f"{what}: the tracking server at {ensure_tracking_uri()} did not answer ({text})")
    return VaexprsRuntimeError(f"{what} could not be read from {ensure_tracking_uri()}: {text}")


def _client(what: str) -> Any:
    """The MLflow client, once the store is known to exist (a lookup must not create an empty mlflow.db)."""
    uri = ensure_tracking_uri()
    if not local_store_exists(uri):
        raise InputError(
            f"{what} not found: there is no tracking store at {uri} yet "
            "(train with --register first, or set MLFLOW_TRACKING_URI)"
        )
    return mlflow_client().MlflowClient()


def model_version(ref: ModelUri) -> Any:
    """The registry's ModelVersion a models:/ URI names (alias or number)."""
    from mlflow.exceptions import MlflowException

    client = _client(f"model {ref.uri!r}")
    try:
        if ref.alias is not None:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        return client.get_model_version(ref.name, ref.version)
    except MlflowException as exc:
        raise _mlflow_error(exc, f"model {ref.uri!r}") from None


def model_versions(name: str) -> list[int]:
    """The versions of a registered model, ascending; InputError when there is no such model."""
    from mlflow.exceptions import MlflowException

    client = _client(f"registered model {name!r}")
    try:
        client.get_registered_model(name)
        quote = "'" if "'" not in name else '"'
        if quote in name:
            raise OptionError("name", f"{name!r} holds both kinds of quote; the registry cannot search it")
        versions = client.search_model_versions(f"name={quote}{name}{quote}")
    except MlflowException as exc:
        raise _mlflow_error(exc, f"registered model {name!r}") from None
    return sorted(int(v.version) for v in versions if v.name == name)


def promote(name: str, version: int | str, alias: str = "champion") -> str | None:
    """Point `models:/NAME@ALIAS` at `version` (moving the alias if it exists); returns the previous version."""
    from mlflow.exceptions import MlflowException

    check_model_name(name, "name")
    check_alias(alias)
    versions = model_versions(name)
    if int(version) not in versions:
        listed = ", ".join(map(str, versions)) or "none"
        raise InputError(f"model {name} has no version {version} (versions: {listed})")
    client = _client(f"registered model {name!r}")
    previous = None
    with contextlib.suppress(MlflowException):
        previous = str(client.get_model_version_by_alias(name, alias).version)
    try:
        client.set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise _mlflow_error(exc, f"alias {alias!r} of {name} version {version}") from None
    return previous


def check_alias(alias: str) -> str:
    """An alias MLflow will accept: letters, digits, '_' and '-', at most 255, and not one it reserves."""
    if not _ALIAS.fullmatch(alias or ""):
        raise OptionError(
            "alias", f"must be a name like champion (letters, digits, '_' and '-'; 1 to 255 of them); got {alias!r}"
        )
    if _RESERVED_ALIAS.fullmatch(alias):
        raise OptionError("alias", f"{alias!r} is reserved by MLflow (latest, numbers and v<number>); pick a name")
    return alias


@contextlib.contextmanager
def downloaded(uri: str) -> Iterator[tuple[Path, str | None]]:
    """Download a models:/ or runs:/ URI into a temp folder (removed afterwards); yield (path, registry version).

    An alias is resolved to its version first and that version is downloaded, so a concurrent promotion cannot
    hand back files of a different version than the one recorded.
    """
    ref = parse_model_uri(uri)
    mlflow = mlflow_client()
    from mlflow.exceptions import MlflowException

    version = None
    target = uri
    if ref.name is not None:
        found = model_version(ref)
        version = str(found.version)
        target = f"models:/{ref.name}/{version}"
    with tempfile.TemporaryDirectory(prefix="vaexprs-download-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=target, dst_path=tmp))
        except MlflowException as exc:
            raise _mlflow_error(exc, f"model {uri!r}") from None
        except OSError as exc:
            raise VaexprsRuntimeError(f"could not download {uri!r}: {first_line(exc)}") from None
        yield local, version


def _bundle_json_in(folder: Path) -> Path | None:
    for layout in BUNDLE_LAYOUTS:
        candidate = folder / layout / BUNDLE_JSON if layout else folder / BUNDLE_JSON
        if candidate.is_file():
            return candidate
    return None


@contextlib.contextmanager
def resolved_bundle(model: str | os.PathLike[str]) -> Iterator[ResolvedModel]:
    """The bundle folder a MODEL names (see the module docstring), available inside the `with` block."""
    text = os.fspath(model)
    if is_model_uri(text):
        ref = parse_model_uri(text)
        # a bare runs:/RUN_ID means the bundle that run logged (as export's means its checkpoint)
        source = f"runs:/{ref.run_id}/{RUN_BUNDLE_PATH}" if ref.run_id is not None and not ref.path else text
        with downloaded(source) as (local, version):
            found = local if local.name == BUNDLE_JSON else _bundle_json_in(local) if local.is_dir() else None
            if found is None:
                raise InputError(f"model {text!r} holds no {BUNDLE_JSON} (is it a vaexprs model?)")
            yield ResolvedModel(found.parent, text, version)
        return
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"model {text!r} does not exist (give a bundle folder, models:/NAME@ALIAS or runs:/ID/PATH)")
    if path.is_file():
        if path.name != BUNDLE_JSON:
            raise InputError(f"model {text!r} is a file but not a {BUNDLE_JSON}; give the bundle folder")
        path = path.parent
    if not (path / BUNDLE_JSON).is_file():
        raise InputError(f"model folder {text!r} has no {BUNDLE_JSON} (give the bundle folder itself)")
    yield ResolvedModel(path.resolve(), str(path.resolve()), None)


def run_of(uri: str) -> str:
    """The run id behind a models:/ URI (the run that logged the version) or a runs:/ URI."""
    ref = parse_model_uri(uri)
    if ref.run_id is not None:
        return ref.run_id
    version = model_version(ref)
    if not version.run_id:
        raise InputError(f"{uri} was not logged from an MLflow run")
    return str(version.run_id)


CHECKPOINT_PATH = "checkpoint/model.pt"


@contextlib.contextmanager
def downloaded_checkpoint(uri: str) -> Iterator[tuple[Path, str]]:
    """A local copy of a tracked run's torch checkpoint, removed afterwards, and the run's id (the lineage a
    bundle exported from it records).

    runs:/RUN_ID (its checkpoint/model.pt), runs:/RUN_ID/PATH (that file), or models:/NAME@ALIAS|VERSION: a
    registered vaexprs model holds the ONNX bundle, not the weights, so the checkpoint comes from the run that
    logged the version.
    """
    ref = parse_model_uri(uri)
    run_id = run_of(uri)
    path = ref.path if ref.run_id is not None and ref.path else CHECKPOINT_PATH
    if path.rstrip("/") in ("checkpoint", ""):
        path = CHECKPOINT_PATH
    with downloaded(f"runs:/{run_id}/{path}") as (local, _):
        if local.is_dir():
            local = local / "model.pt" if (local / "model.pt").is_file() else local / CHECKPOINT_PATH
        if not local.is_file():
            raise InputError(f"{uri!r} holds no {CHECKPOINT_PATH}")
        yield local, run_id
