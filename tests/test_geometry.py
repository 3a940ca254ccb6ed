"""Meshes, procedural shapes, mesh files, the ModelNet loader and voxelisation, against analytic
shapes."""
from __future__ import annotations

import math
import sys

import pytest
import torch

from fastperc.geometry import (CLASSES, Mesh, ModelNet, ProceduralShapes, make_shape, occupancy, read_mesh,
                               solid_voxels, sparse_occupancy, surface_voxels, write_off)
from fastperc.geometry import shapes
from fastperc.geometry.voxelize import column_crossings


def signed_volume(mesh: Mesh) -> float:
    t = mesh.triangles
    return float((t[:, 0] * torch.linalg.cross(t[:, 1], t[:, 2])).sum() / 6)


def is_closed(mesh: Mesh) -> bool:
    """Every directed edge appears once and its reverse too: closed, consistently oriented."""
    f = mesh.faces
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).tolist()
    directed = set(map(tuple, edges))
    return len(directed) == len(edges) and all((b, a) in directed for a, b in directed)


# ----------------------------------------------------------------------------------- meshes and shapes

def test_mesh_rejects_bad_input():
    v = torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"vertices must be \(V, 3\)"):
        Mesh(torch.zeros(3, 2), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="triangles"):
        Mesh(v, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="there are 3 vertices"):
        Mesh(v, torch.tensor([[0, 1, 3]]))
    with pytest.raises(TypeError, match="integer"):
        Mesh(v, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="finite"):
        Mesh(torch.full((3, 3), float("nan")), torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="positive area"):
        Mesh(v, torch.tensor([[0, 1, 2]])).sample_surface(10)


@pytest.mark.parametrize("make, volume", [
    (lambda: shapes.box((1, 2, 3)), 6.0),
    (lambda: shapes.pyramid(1, 1), 1 / 3),
    (lambda: shapes.sphere(1.0, rings=48), 4 / 3 * math.pi),
    (lambda: shapes.cylinder(0.5, 1.0), math.pi * 0.25),
    (lambda: shapes.cone(0.5, 1.0), math.pi * 0.25 / 3),
    (lambda: shapes.torus(0.7, 0.25), 2 * math.pi ** 2 * 0.7 * 0.25 ** 2),
    (lambda: shapes.capsule(0.4, 1.0), math.pi * 0.16 + 4 / 3 * math.pi * 0.064),
])
def test_primitives_are_closed_outward_and_of_the_analytic_volume(make, volume):
    mesh = make()
    assert is_closed(mesh)
    # Polygons inscribed in curved surfaces lose a little volume (the torus, 12 x 24 segments: 5.6%).
    assert volume * 0.94 <= signed_volume(mesh) <= volume * (1 + 1e-12)


def test_every_class_is_closed_normalised_deterministic_and_posed():
    assert len(CLASSES) >= 10
    for name in CLASSES:
        mesh = make_shape(name, seed=3)
        parts_closed = is_closed(mesh)  # composed shapes: each part closed, parts share no vertex
        assert parts_closed and signed_volume(mesh) > 0, name
        radius = mesh.vertices.norm(dim=1)
        assert radius.max().item() == pytest.approx(1.0, abs=1e-12)
        centre = (mesh.vertices.amax(0) + mesh.vertices.amin(0)) / 2
        assert centre.abs().max() < 1e-12
        again = make_shape(name, seed=3)
        assert torch.equal(again.vertices, mesh.vertices) and torch.equal(again.faces, mesh.faces)
        assert not torch.equal(make_shape(name, seed=4).vertices, mesh.vertices)
    with pytest.raises(ValueError, match="unknown shape class"):
        make_shape("teapot", 0)


def test_procedural_dataset_is_deterministic_balanced_and_split():
    train = ProceduralShapes("train", per_class=3)
    test = ProceduralShapes("test", per_class=3)
    assert len(train) == 3 * len(CLASSES)
    labels = [train[i][1] for i in range(len(train))]
    assert sorted(labels) == sorted(list(range(len(CLASSES))) * 3)
    assert torch.equal(train[5][0].vertices, ProceduralShapes("train", per_class=3)[5][0].vertices)
    assert not torch.equal(train[5][0].vertices, test[5][0].vertices)
    assert train[-1][1] == labels[-1]
    with pytest.raises(IndexError):
        train[len(train)]
    with pytest.raises(ValueError, match="split"):
        ProceduralShapes("val")
    with pytest.raises(ValueError, match="unknown"):
        ProceduralShapes(classes=["sphere", "teapot"])


def test_surface_sampling_is_area_weighted_seeded_and_on_the_surface():
    mesh = shapes.box((1.0, 2.0, 3.0))
    g = torch.Generator().manual_seed(0)
    points, normals = mesh.sample_surface(60000, g)
    again, _ = mesh.sample_surface(60000, torch.Generator().manual_seed(0))
    assert torch.equal(points, again)
    half = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)
    on_face = (points.abs() - half).abs() < 1e-12  # which face each point lies on
    assert on_face.any(1).all()
    # Faces by area: x faces 2*6, y faces 2*3, z faces 2*2 of a total area of 22.
    share = on_face.double().mean(0)
    torch.testing.assert_close(share, torch.tensor([12 / 22, 6 / 22, 4 / 22], dtype=torch.float64), atol=0.01, rtol=0)
    # The normal is the face's: along the axis the point lies on, pointing out.
    axis = on_face.double().argmax(1)
    assert torch.equal(normals.abs().argmax(1), axis)
    assert (normals.gather(1, axis[:, None]) * points.gather(1, axis[:, None]) > 0).all()


def test_normals_transforms_and_merge():
    sphere = shapes.sphere(2.0, rings=24)
    direction = sphere.vertices / sphere.vertices.norm(dim=1, keepdim=True)
    assert (sphere.vertex_normals() * direction).sum(1).min() > 0.99
    mirrored = shapes.box((1, 2, 3)).transformed(scale=(-1, 1, 1))
    assert signed_volume(mirrored) == pytest.approx(6.0)  # faces flipped with the mirror: still outward
    turned = shapes.box((1, 2, 3)).transformed(rotation=shapes.rotation_z(0.3), translation=(1, 2, 3))
    assert signed_volume(turned) == pytest.approx(6.0)
    both = Mesh.merge([shapes.box(), shapes.box(centre=(3, 0, 0))])
    assert len(both.faces) == 24 and signed_volume(both) == pytest.approx(2.0)


# ----------------------------------------------------------------------------------- files

def test_off_round_trip_modelnet_header_quads_obj_and_ply(tmp_path):
    import trimesh

    mesh = make_shape("chair", 1)
    write_off(mesh, tmp_path / "a.off")
    write_off(mesh, tmp_path / "b.off", header_counts_inline=True)  # ModelNet's `OFF40 60 0`
    assert (tmp_path / "b.off").read_text().startswith(f"OFF{len(mesh.vertices)} {len(mesh.faces)} 0\n")
    for name in ("a.off", "b.off"):
        back = read_mesh(tmp_path / name)
        assert torch.equal(back.vertices, mesh.vertices) and torch.equal(back.faces, mesh.faces)
    # A quad (as ModelNet has) becomes two triangles covering its area.
    (tmp_path / "quad.off").write_text("OFF\n4 1 0\n0 0 0\n2 0 0\n2 1 0\n0 1 0\n4 0 1 2 3\n")
    quad = read_mesh(tmp_path / "quad.off")
    assert quad.faces.shape == (2, 3) and quad.area() == pytest.approx(2.0)
    for ext in ("obj", "ply"):
        trimesh.Trimesh(mesh.vertices.numpy(), mesh.faces.numpy(), process=False).export(tmp_path / f"c.{ext}")
        back = read_mesh(tmp_path / f"c.{ext}")
        assert signed_volume(back) == pytest.approx(signed_volume(mesh), rel=1e-6)


def test_mesh_file_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_mesh(tmp_path / "missing.off")
    with pytest.raises(ValueError, match="unknown mesh format"):
        read_mesh(tmp_path / "x.png")
    (tmp_path / "bad.off").write_text("this is not a mesh\n")
    with pytest.raises(ValueError, match="not a readable OFF mesh|no triangles"):
        read_mesh(tmp_path / "bad.off")
    write_off(shapes.box(), tmp_path / "box.off")
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError, match=r"fastperc\[3d\]"):
        read_mesh(tmp_path / "box.off")


def test_modelnet_loader_on_the_archive_layout(tmp_path):
    root = tmp_path / "ModelNet10"
    for name, shape in (("chair", "chair"), ("table", "table")):
        for split, count in (("train", 3), ("test", 2)):
            folder = root / name / split
            folder.mkdir(parents=True)
            for i in range(count):
                write_off(make_shape(shape, i).transformed(scale=40.0, translation=(5, 5, 5)),
                          folder / f"{name}_{i + 1:04d}.off", header_counts_inline=i % 2 == 0)
            (folder / "notes.txt").write_text("not a mesh")
    train = ModelNet(root, "train")
    assert train.classes == ("chair", "table") and len(train) == 6
    mesh, label = train[4]
    assert label == 1 and mesh.vertices.norm(dim=1).max().item() == pytest.approx(1.0)
    assert [f.split("/")[-1] for f, _ in ModelNet(root, "test").files] == [
        "chair_0001.off", "chair_0002.off", "table_0001.off", "table_0002.off"]
    assert len(ModelNet(root, "train", classes=["table"])) == 3
    with pytest.raises(ValueError, match="sofa"):
        ModelNet(root, "train", classes=["sofa"])
    with pytest.raises(FileNotFoundError):
        ModelNet(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------- voxels

@pytest.mark.parametrize("resolution", [32, 64])
def test_sphere_voxel_counts_against_the_analytic_sphere(resolution):
    sphere = shapes.sphere(1.0, rings=64, segments=128)
    r = resolution / 2
    surface = surface_voxels(sphere, resolution)
    # A surface crosses on average 1.5 unit cubes per unit of area (mean of |nx| + |ny| + |nz|).
    assert 0.97 <= len(surface) / (1.5 * 4 * math.pi * r * r) <= 1.03
    solid = solid_voxels(sphere, resolution)
    centre_distance = ((solid.double() + 0.5) - r).norm(dim=1)
    assert centre_distance.max() < r + math.sqrt(3) / 2  # nothing outside the surface's voxels
    grid = occupancy(sphere, resolution, padding=0, solid=True)
    assert int(grid.sum()) == len(solid)
    every = torch.stack(torch.meshgrid(*[torch.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3)
    deep_inside = ((every.double() + 0.5) - r).norm(dim=1) < r - 1
    assert grid.reshape(-1)[deep_inside].all()  # every voxel well inside is filled
    assert torch.equal(surface, torch.unique(surface, dim=0))


def test_axis_aligned_box_voxels_exactly():
    # Faces at 2.2 and 7.8 voxel units: voxels 2..7 on each axis touched, their centres 2.5..7.5 inside.
    box = shapes.box((5.6, 5.6, 5.6), centre=(5.0, 5.0, 5.0))
    surface = surface_voxels(box, 10, bounds=(0, 10))
    solid = solid_voxels(box, 10, bounds=(0, 10))
    assert len(solid) == 6 ** 3 and len(surface) == 6 ** 3 - 4 ** 3
    assert solid.min() == 2 and solid.max() == 7


def test_rays_through_shared_edges_and_vertices_cross_once():
    # Corners on column centres: the rays through the diagonals that split the top and bottom faces,
    # and through the pyramid's apex (4 faces) and base diagonal, must cross exactly once per layer.
    box = shapes.box((4.0, 4.0, 4.0), centre=(4.5, 4.5, 4.5))  # x, y, z in [2.5, 6.5]
    column, _ = column_crossings(box.triangles, 10)
    counts = torch.bincount(column, minlength=100).reshape(10, 10)
    assert (counts % 2 == 0).all()
    assert (counts[3:6, 3:6] == 2).all()  # inside the footprint, the diagonal (k, k) included
    pyramid = shapes.pyramid(4.0, 4.0).transformed(translation=(4.5, 4.5, 4.5))
    column, _ = column_crossings(pyramid.triangles, 10)
    counts = torch.bincount(column, minlength=100).reshape(10, 10)
    assert (counts % 2 == 0).all() and counts[4, 4] == 2  # the apex column: base and apex, once each


def test_every_class_voxelises_watertight_and_sparse_matches_dense():
    meshes = [make_shape(name, 7) for name in CLASSES]
    for mesh in meshes:
        tris = (mesh.triangles + 1) * 16
        column, _ = column_crossings(tris, 32)
        assert (torch.bincount(column) % 2 == 0).all()
        solid, surface = occupancy(mesh, 32, padding=0, solid=True), occupancy(mesh, 32, padding=0)
        assert (solid | surface).sum() == solid.sum() and solid.sum() > surface.sum()
    sparse = sparse_occupancy(meshes[:3], 32, solid=True)
    assert sparse.spatial_shape == (32, 32, 32) and sparse.feats.shape[1] == 1
    dense = sparse.to_dense(3)[:, 0] > 0
    for b, mesh in enumerate(meshes[:3]):
        assert torch.equal(dense[b], occupancy(mesh, 32, padding=0, solid=True))
    with pytest.raises(ValueError, match="padding"):
        occupancy(meshes[0], 8, padding=4)


# ----------------------------------------------------------------------------------- rendering

def test_rasteriser_covers_every_point_of_a_split_square_once():
    from fastperc.geometry.raster import coverage, edge_equations

    # A square split along its diagonal, corners on grid points: the points on the diagonal, the
    # edges and the corners belong to exactly one of the two triangles (or to none, on the outside).
    square = torch.tensor([[[0.0, 0.0], [4.0, 0.0], [4.0, 4.0]], [[0.0, 0.0], [4.0, 4.0], [0.0, 4.0]]],
                          dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
    eq, owns, valid = edge_equations(square.double())
    counts = sum(coverage(eq, owns, valid, torch.full((len(grid),), k), grid.double())[0].long() for k in range(2))
    inside = (grid > 0).all(1) & (grid < 4).all(1)
    assert (counts[inside] == 1).all() and (counts <= 1).all()
    # A fan of 4 triangles around a centre point: the centre belongs to exactly one of them.
    c, corners = torch.tensor([2.0, 2.0]), torch.tensor([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    fan = torch.stack([torch.stack([c, corners[k], corners[(k + 1) % 4]]) for k in range(4)]).double()
    eq, owns, valid = edge_equations(fan)
    hits = [bool(coverage(eq, owns, valid, torch.tensor([k]), c[None].double())[0]) for k in range(4)]
    assert sum(hits) == 1


def test_render_sphere_silhouette_depth_shading_and_determinism():
    from fastperc.geometry.render import mvcnn_cameras, render

    assert mvcnn_cameras()[:2] == [(0.0, 30.0), (30.0, 30.0)] and len(mvcnn_cameras()) == 12
    sphere = shapes.sphere(1.0, rings=64, segments=128)
    size, distance, fov = 128, 3.0, 50.0
    out = render(sphere, size=size, distance=distance, fov=fov)
    assert out["image"].shape == (12, size, size) and out["face"].dtype == torch.int64
    # The silhouette of a unit sphere: a disc of radius tan(asin(1 / d)) * focal * size / 2 pixels.
    radius = math.tan(math.asin(1 / distance)) / math.tan(math.radians(fov / 2)) * size / 2
    area = (out["face"] >= 0).sum((1, 2)).double()
    assert ((area / (math.pi * radius ** 2) - 1).abs() < 0.02).all()
    # Depth at the image centre: the sphere's near point, d - 1 along the view axis.
    centre = out["depth"][:, size // 2, size // 2]
    assert ((centre - (distance - 1)).abs() < 0.01).all()
    assert torch.isinf(out["depth"][:, 0, 0]).all() and (out["image"][:, 0, 0] == 1).all()
    shaded = out["image"][out["face"] >= 0]
    assert shaded.min() >= 0.3 - 1e-6 and shaded.max() <= 0.9 + 1e-6
    assert out["image"][:, size // 2, size // 2].min() > 0.89  # facing the camera: 0.3 + 0.6
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        again = render(sphere, size=size, distance=distance, fov=fov)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(out[k], again[k]) for k in out)


def test_render_batch_views_of_every_class_and_errors():
    from fastperc.geometry.render import render, render_batch

    images = render_batch([make_shape(name, 0) for name in CLASSES], size=32)
    assert images.shape == (len(CLASSES), 12, 3, 32, 32) and images.dtype == torch.float32
    assert ((images < 1).flatten(2).any(2)).all()  # every view sees its shape
    # Views differ with the azimuth for asymmetric shapes: a chair seen from 12 sides.
    chair = images[list(CLASSES).index("chair"), :, 0]
    assert len({tuple(v.flatten().tolist()) for v in chair}) == 12
    with pytest.raises(ValueError, match="behind a camera"):
        render(make_shape("box", 0), distance=0.5)
    with pytest.raises(ValueError, match="cameras"):
        render(make_shape("box", 0), cameras=[(0.0,)])


# ----------------------------------------------------------------------------------- signed distances

def fine_sphere():
    return shapes.sphere(1.0, rings=32, segments=64)


def test_mesh_sdf_is_exact_on_a_box_and_close_to_the_analytic_primitives():
    from fastperc.geometry import sdf

    p = torch.rand(20000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    for sign in ("parity", "winding"):
        torch.testing.assert_close(sdf.mesh_sdf(shapes.box((1.0, 0.6, 0.4)), p, sign=sign),
                                   sdf.sdf_box(p, (1.0, 0.6, 0.4)), rtol=0, atol=1e-12)
    # Polygonal versions of curved primitives: as close as the polygons are to the surfaces.
    cases = [(fine_sphere(), sdf.sdf_sphere, 0.003), (shapes.cylinder(0.5, 1.0), sdf.sdf_cylinder, 0.01),
             (shapes.torus(0.7, 0.25), sdf.sdf_torus, 0.02), (shapes.capsule(0.4, 1.0), sdf.sdf_capsule, 0.02)]
    for mesh, analytic, gap in cases:
        got, want = sdf.mesh_sdf(mesh, p[:1500]), analytic(p[:1500])
        assert (got - want).abs().max() <= gap
        assert ((got < 0) == (want < 0))[want.abs() > gap].all()


def test_parity_sign_equals_winding_number_on_every_class():
    from fastperc.geometry import sdf

    p = torch.rand(3000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    for name in CLASSES:
        mesh = make_shape(name, 1)
        assert torch.equal(sdf.inside_by_parity(mesh, p), sdf.winding_number(mesh, p) > 0.5), name
    w = sdf.winding_number(fine_sphere(), torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-9, rtol=0)


def test_deepsdf_samples():
    from fastperc.geometry import sdf

    mesh = make_shape("chair", 0)
    points, values = sdf.sample_sdf(mesh, 20000, torch.Generator().manual_seed(0))
    again, _ = sdf.sample_sdf(mesh, 20000, torch.Generator().manual_seed(0))
    assert points.shape == (20000, 3) and values.shape == (20000,) and torch.equal(points, again)
    near, uniform = values[:18800], values[18800:]  # 47/50 near the surface, then uniform in the cube
    assert (points[18800:].abs() <= 1).all()
    # Noise of variance 0.005 and 0.0005 (std 0.071 and 0.022): few near samples are further than 0.25.
    assert (near.abs() < 0.25).float().mean() > 0.97 and uniform.abs().mean() > near.abs().mean()
    assert (values < 0).any() and (values > 0).any()
    torch.testing.assert_close(values, sdf.mesh_sdf(mesh, points), rtol=0, atol=0)
    with pytest.raises(ValueError, match="count"):
        sdf.sample_sdf(mesh, 0)
    with pytest.raises(ValueError, match="sign"):
        sdf.mesh_sdf(mesh, points, sign="rays")


def test_marching_cubes_gives_the_surface_back():
    from fastperc.geometry import sdf

    grid = sdf.sdf_grid(lambda q: sdf.sdf_sphere(q, 0.8), 48, dtype=torch.float64)
    sphere = sdf.marching_cubes(grid)
    assert signed_volume(sphere) == pytest.approx(4 / 3 * math.pi * 0.8 ** 3, rel=0.01)  # outward faces
    assert (sphere.vertices.norm(dim=1) - 0.8).abs().max() < 0.01
    chair = make_shape("chair", 2)
    back = sdf.marching_cubes(sdf.sdf_grid(lambda q: sdf.mesh_sdf(chair, q), 40, dtype=torch.float64))
    assert sdf.unsigned_distance(chair, back.vertices).max() < 2 / 39  # within a grid step of the chair
    with pytest.raises(ValueError, match="does not cross"):
        sdf.marching_cubes(torch.ones(8, 8, 8))
