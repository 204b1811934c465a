"""MLflow on the training side: runs with params, per-epoch metrics and artifacts; registering models."""
