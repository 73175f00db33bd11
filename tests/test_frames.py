"""Training frames decoded once into a file equal decoding each time, pixel for pixel."""

import numpy as np
import pytest
import torch
from PIL import Image

from sightline import data, frames
from sightline.geometry import Geometry


@pytest.fixture
def photos(tmp_path):
    """Three photo-sized images: a JPEG, an EXIF-rotated JPEG and a PNG."""
    rng = np.random.default_rng(0)
    paths = []
    for name, size in (("a.jpg", (900, 600)), ("b.jpg", (640, 960)), ("c.png", (500, 500))):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        path = tmp_path / name
        if name == "b.jpg":
            exif = Image.Exif()
            exif[0x0112] = 6  # stored rotated: the upright image is 960 x 640
            image.save(path, exif=exif)
        else:
            image.save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("geometry", [Geometry(64, 72, "bicubic"), Geometry(48, None, "bilinear")])
def test_frames_equal_decoding_each_image(photos, tmp_path, geometry):
    path = frames.ensure_frames(tmp_path / "frames", photos, geometry, progress=False)
    stored = np.load(path)
    transform = geometry.transform()
    for row, image in enumerate(sorted(photos)):
        expected = transform(data.load_image(image)).mul(255).round().to(torch.uint8).numpy()
        assert np.array_equal(stored[row], expected)
    assert data.load_image(photos[1]).size == (960, 640)  # the EXIF case is read upright


def test_frames_are_decoded_once_and_a_partial_file_is_not_taken(photos, tmp_path, monkeypatch):
    geometry = Geometry(32, None, "bilinear")
    folder = tmp_path / "frames"
    unfinished = frames.frames_path(folder, photos, geometry).with_suffix(".partial.npy")
    folder.mkdir()
    unfinished.write_bytes(b"interrupted")
    decoded = []
    original = frames.frame_pixels
    monkeypatch.setattr(frames, "frame_pixels", lambda p, t: decoded.append(p) or original(p, t))
    first = frames.ensure_frames(folder, photos, geometry, progress=False)
    assert sorted(decoded) == sorted(photos) and not unfinished.exists()
    assert frames.ensure_frames(folder, list(reversed(photos)), geometry, progress=False) == first
    assert len(decoded) == 3  # nothing decoded the second time, in any order of the list
    assert frames.frames_path(folder, photos, Geometry(32, 36, "bilinear")) != first


def test_frame_set_reads_items_through_their_transform_in_workers(photos, tmp_path):
    geometry = Geometry(32, None, "bilinear")
    path = frames.ensure_frames(tmp_path, photos, geometry, workers=2, progress=False)
    items = [("c", photos[2], 3), ("a", photos[0], 1)]
    frame_set = frames.FrameSet(path, photos, items, lambda x: x.float() / 255)
    loader = torch.utils.data.DataLoader(frame_set, batch_size=2, num_workers=2)
    pixels, labels = next(iter(loader))
    assert labels.tolist() == [3, 1]
    expected = [frames.frame_pixels(p, geometry.transform()) for _, p, _ in items]
    assert torch.equal(pixels, torch.from_numpy(np.stack(expected)).float() / 255)


def test_a_run_waiting_on_the_lock_takes_the_file_another_process_finished(photos, tmp_path,
                                                                           monkeypatch):
    import fcntl
    import threading

    geometry = Geometry(32, None, "bilinear")
    folder = tmp_path / "frames"
    made = frames.ensure_frames(tmp_path / "elsewhere", photos, geometry, progress=False)
    path = frames.frames_path(folder, photos, geometry)
    folder.mkdir()
    monkeypatch.setattr(frames, "frame_pixels", lambda p, t: pytest.fail("decoded twice"))
    with open(path.with_suffix(".lock"), "w") as lock:  # another process is decoding
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = []
        waiting = threading.Thread(target=lambda: result.append(
            frames.ensure_frames(folder, photos, geometry, progress=False)))
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive() and not result  # blocked on the lock
        made.rename(path)  # the other process finishes
    waiting.join(timeout=10)
    assert result == [path]
