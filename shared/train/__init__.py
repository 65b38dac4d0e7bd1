"""Training, evaluation, model bundles and prediction."""
