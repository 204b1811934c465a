"""Where runs and models live: the MLflow tracking store every vaexprs command and subprocess shares.

    uri = ensure_tracking_uri()     # $MLFLOW_TRACKING_URI, else sqlite:///<working folder>/mlflow.db
    mlflow = mlflow_client()        # mlflow, imported, with the store checked and the HTTP limits set

The light install (mlflow-skinny) talks to tracking servers and reads file stores but cannot open a database;
pointed at one it stops at once with a message saying what to install or set (`check_tracking_store`). MLflow 3
opens a file store only with MLFLOW_ALLOW_FILE_STORE=true (`check_file_store` says so first). Calls
to a tracking server give up within ~15 s (one retry, 5 s timeout) unless the user set MLflow's own
`MLFLOW_HTTP_REQUEST_TIMEOUT` / `MLFLOW_HTTP_REQUEST_MAX_RETRIES`: MLflow's defaults retry for minutes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from vaexprs.errors import InputError

# Schemes of database-backed stores: the full mlflow (SQLAlchemy) opens them, mlflow-skinny cannot.
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# MLflow's defaults (120 s timeout, 7 retries with backoff) keep a command waiting ~4 minutes for a server that is
# down; these give up after ~13 s (two 5 s attempts), still riding out one dropped connection.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}
DEFAULT_EXPERIMENT = "vaexprs"


def default_tracking_uri() -> str:
    """`sqlite:///<cwd>/mlflow.db`: an absolute path, so child processes in other folders share the store."""
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def ensure_tracking_uri() -> str:
    """The tracking URI every vaexprs command uses; sets $MLFLOW_TRACKING_URI so subprocesses inherit it.

    $MLFLOW_TRACKING_URI wins, then a URI set in this process with mlflow.set_tracking_uri, then the default.
    """
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        with contextlib.suppress(ImportError, AttributeError):
            from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

            if is_tracking_uri_set():
                return str(mlflow.get_tracking_uri())
    uri = default_tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


def experiment_name(requested: str | None = None) -> str:
    """The experiment for runs this process starts: the option, else $MLFLOW_EXPERIMENT_NAME, else `vaexprs`."""
    return requested or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def full_mlflow_installed() -> bool:
    """Whether this environment can open database stores (the full mlflow brings SQLAlchemy and alembic)."""
    return all(importlib.util.find_spec(name) is not None for name in ("sqlalchemy", "alembic"))


def check_tracking_store(uri: str | None = None) -> str:
    """Fail with a clear InputError where the light client meets a database store it cannot open."""
    uri = uri or ensure_tracking_uri()
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in DB_SCHEMES and not full_mlflow_installed():
        raise InputError(
            f"the tracking URI {uri} needs the full mlflow (pip install vaexprs[train]) "
            "or a tracking server: MLFLOW_TRACKING_URI=http://..."
        )
    return uri


def is_file_store(uri: str) -> bool:
    """Whether `uri` names a folder store (file:/..., ./mlruns, /abs/mlruns) rather than a database or a server."""
    if uri.lower().startswith("file:"):
        return True
    return "://" not in uri and (uri.startswith(("/", ".", "~")) or os.sep in uri or uri[1:3] == ":\\")


def check_file_store(uri: str) -> None:
    """MLflow 3 keeps folder stores in maintenance mode: it opens one only with MLFLOW_ALLOW_FILE_STORE=true, and
    says so in a paragraph once a run or a lookup has started. Say it in one line, before any work."""
    if not is_file_store(uri):
        return
    try:
        from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
    except ImportError:  # an MLflow without the maintenance mode opens file stores as it always did
        return
    if not MLFLOW_ALLOW_FILE_STORE.get():
        raise InputError(
            f"the tracking URI {uri} is a file store, which MLflow opens only with MLFLOW_ALLOW_FILE_STORE=true; "
            "set it, or use a database (sqlite:///...) or a tracking server (http://...)"
        )


def local_store_exists(uri: str) -> bool:
    """Whether a sqlite store file exists (a lookup must not create an empty mlflow.db as a side effect)."""
    if not uri.startswith("sqlite:///"):
        return True
    return Path(uri[len("sqlite:///") :]).exists()


def mlflow_client() -> Any:
    """mlflow, imported, with the store set up and checked (the import costs seconds, so only where needed)."""
    uri = check_tracking_store(ensure_tracking_uri())
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow-skinny is a base dependency
        raise InputError("this needs the MLflow client: pip install 'vaexprs[train]'") from None
    check_file_store(uri)
    return mlflow
