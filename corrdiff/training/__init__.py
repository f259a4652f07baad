"""Training: the LightningModules of each phase, the image DataModule and the LightningCLI entry."""

from corrdiff.training.adversarial import AdversarialTraining
from corrdiff.training.base_score import BaseScoreTraining
from corrdiff.training.data import ImageDataModule
from corrdiff.training.lit import CodecTraining, JointTraining, ScoreTraining
from corrdiff.training.pairs import PairDataModule
from corrdiff.training.rate_distortion import RateDistortionTraining

__all__ = ["AdversarialTraining", "BaseScoreTraining", "CodecTraining", "ImageDataModule", "JointTraining",
           "PairDataModule", "RateDistortionTraining", "ScoreTraining"]
