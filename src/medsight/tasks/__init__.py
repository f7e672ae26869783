"""Task pipelines that bind the shared core (data, plan, trainer, predictor, evaluation) together."""
