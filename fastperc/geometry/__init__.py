"""3D geometry: triangle meshes, procedural shapes, mesh files and ModelNet, voxel occupancy."""
from fastperc.geometry.io import read_mesh, write_off
from fastperc.geometry.mesh import Mesh
from fastperc.geometry.modelnet import ModelNet
from fastperc.geometry.shapes import CLASSES, ProceduralShapes, make_shape
from fastperc.geometry.voxelize import occupancy, solid_voxels, sparse_occupancy, surface_voxels

__all__ = ["Mesh", "read_mesh", "write_off", "ModelNet", "CLASSES", "ProceduralShapes", "make_shape",
           "occupancy", "sparse_occupancy", "surface_voxels", "solid_voxels"]
