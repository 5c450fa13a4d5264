"""Training: the DLR paper's source task and the tagging target task (``dlr-engine train``)."""
from .trainer import TrainConfig, Trainer, evaluate, train

__all__ = ["TrainConfig", "Trainer", "evaluate", "train"]
