"""Sparse voxel tensors and sparse 3D convolution."""
from fastperc.sparse import convert, functional, nn
from fastperc.sparse.tensor import SparseTensor, cat, select_batch, voxelize

__all__ = ["SparseTensor", "cat", "select_batch", "voxelize", "convert", "functional", "nn"]
