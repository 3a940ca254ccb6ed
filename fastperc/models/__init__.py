"""Backbones written here (no torchvision dependency) that load torchvision-format weight files, a
random multi-scale network built for texture statistics without any weights, and the networks the
examples train (feed-forward style transfer, sparse segmentation), and the lecture's 3D models (VoxNet, dense
and sparse; the multi-view CNN; DeepSDF)."""
from fastperc.models.alexnet import AlexNet
from fastperc.models.deepsdf import DeepSDF
from fastperc.models.extractor import FeatureExtractor
from fastperc.models.minkunet import MinkUNet
from fastperc.models.mvcnn import MVCNN
from fastperc.models.random_texture import RandomMultiScale
from fastperc.models.squeezenet import SqueezeNet
from fastperc.models.transform_net import TransformNet
from fastperc.models.vgg import VGG, vgg16, vgg19
from fastperc.models.voxnet import VoxNet

__all__ = ["FeatureExtractor", "VGG", "vgg16", "vgg19", "AlexNet", "SqueezeNet", "RandomMultiScale",
           "TransformNet", "MinkUNet", "VoxNet", "MVCNN", "DeepSDF"]
