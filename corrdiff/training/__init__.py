"""Training: the LightningModules of each phase, the image DataModule and the LightningCLI entry."""

from corrdiff.training.adversarial import AdversarialTraining
from corrdiff.training.data import ImageDataModule
from corrdiff.training.lit import CodecTraining, JointTraining, ScoreTraining

__all__ = ["AdversarialTraining", "CodecTraining", "ImageDataModule", "JointTraining", "ScoreTraining"]
