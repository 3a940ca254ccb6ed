"""Sparse voxel tensors and sparse 3D convolution."""
from fastperc.sparse import convert, functional, nn
from fastperc.sparse.tensor import SparseTensor, cat, voxelize

__all__ = ["SparseTensor", "cat", "voxelize", "convert", "functional", "nn"]
