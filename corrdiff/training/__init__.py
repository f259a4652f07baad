"""Training: the two LightningModules, the image DataModule and the LightningCLI entry."""

from corrdiff.training.data import ImageDataModule
from corrdiff.training.lit import CodecTraining, JointTraining, ScoreTraining

__all__ = ["CodecTraining", "ImageDataModule", "JointTraining", "ScoreTraining"]
