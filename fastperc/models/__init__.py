"""Backbones written here (no torchvision dependency) that load torchvision-format weight files, and a
random multi-scale network built for texture statistics without any weights."""
from fastperc.models.alexnet import AlexNet
from fastperc.models.extractor import FeatureExtractor
from fastperc.models.random_texture import RandomMultiScale
from fastperc.models.squeezenet import SqueezeNet
from fastperc.models.vgg import VGG, vgg16, vgg19

__all__ = ["FeatureExtractor", "VGG", "vgg16", "vgg19", "AlexNet", "SqueezeNet", "RandomMultiScale"]
