import numpy as np
import pytest
import torch
from PIL import Image

from scorematch import plots


@pytest.fixture
def points():
    return torch.randn(400, 2, generator=torch.Generator().manual_seed(0))


def test_scatter_score_field_and_loss_curve_are_valid_pngs(tmp_path, points):
    paths = [
        plots.samples_vs_data(points, points + 1, tmp_path / "s.png", title="t"),
        plots.samples_vs_data(points, None, tmp_path / "s1.png"),
        plots.score_field(lambda p: -p, points, tmp_path / "f.png"),
    ]
    (tmp_path / "m.csv").write_text("step,loss\n1,3.0\n2,2.0\n3,1.5\n")
    paths.append(plots.loss_curve(tmp_path / "m.csv", tmp_path / "l.png"))
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # no temp files left behind


def test_trajectory_gif_has_one_frame_per_state(tmp_path, points):
    traj = [points * s for s in (4.0, 3.0, 2.0, 1.0)]
    path = plots.trajectory_gif(traj, tmp_path / "t.gif", data=points)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 4
    with pytest.raises(ValueError, match="two states"):
        plots.trajectory_gif(traj[:1], tmp_path / "u.gif")


def test_image_grid_tiles_images_exactly(tmp_path):
    imgs = torch.zeros(4, 1, 2, 2)
    imgs[1] = 1.0
    path = plots.image_grid(imgs, tmp_path / "g.png", nrow=2, scale=1)
    arr = np.asarray(Image.open(path))
    assert arr.shape == (2 * 3 + 1, 2 * 3 + 1)  # 2×2 tiles of 2 px with 1 px white borders
    assert (arr[1:3, 1:3] == 0).all() and (arr[1:3, 4:6] == 255).all()
    with pytest.raises(ValueError, match="images must have shape"):
        plots.image_grid(torch.zeros(2, 2, 4, 4), tmp_path / "bad.png")


def test_loss_curve_rejects_empty_csv(tmp_path):
    (tmp_path / "m.csv").write_text("step,loss\n")
    with pytest.raises(ValueError, match="no rows"):
        plots.loss_curve(tmp_path / "m.csv", tmp_path / "l.png")
