"""The light MLflow client: where the tracking store is, models:/ and runs:/ URIs, registered versions and aliases."""
