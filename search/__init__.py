"""The loss-configuration search platform: Optuna space, Ray Tune dispatch, MLflow tracking."""
