"""Trained models as ready predictors: ``mlray.models.load("models:/fraud@champion")``."""

from mlray.models.predictor import Predictor, load, save_model

__all__ = ["Predictor", "load", "save_model"]
