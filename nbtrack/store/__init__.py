"""Where runs are kept: MLflow, reached only through :class:`MlflowStore`."""

from nbtrack.store.mlflow_store import MlflowStore, embedded_uri

__all__ = ["MlflowStore", "embedded_uri"]
