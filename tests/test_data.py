import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sr_cli.data import HRPatchDataset, SampleRange, find_images, load_validation, shrink, worker_init
from sr_cli.imageio import to_tensor
from sr_cli.resize import imresize, matlab_lr


def write_images(folder, count, size=(40, 48), seed=0, grey=()):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 256, (size[0] // 4, size[1] // 4, 3), dtype=np.uint8)
        img = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        if i in grey:
            img = img[:, :, 0]
        cv2.imwrite(str(folder / f"img{i}.png"), img)
    return folder


def test_find_images_recursive_and_filtered(tmp_path):
    write_images(tmp_path / "a", 2)
    write_images(tmp_path / "a" / "deep", 1)
    (tmp_path / "a" / "notes.txt").write_text("x")
    cv2.imwrite(str(tmp_path / "a" / "up.JPG"), np.zeros((8, 8, 3), np.uint8))
    found = find_images([tmp_path / "a"])
    assert sorted(p.name for p in found) == ["img0.png", "img0.png", "img1.png", "up.JPG"]
    with pytest.raises(ValueError):
        find_images([tmp_path / "missing"])


def test_items_shapes_range_and_determinism(tmp_path):
    folder = write_images(tmp_path / "hr", 3, grey={1})
    ds = HRPatchDataset([folder], scale=2, patch=8, seed=3, epoch_length=10)
    assert len(ds) == 10
    for i in (0, 1, 2, 25):  # indices past the virtual epoch are fine
        lr, hr = ds[i]
        assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16)
        assert lr.dtype == hr.dtype == torch.float32
        assert 0 <= float(lr.min()) and float(lr.max()) <= 1
        assert torch.equal(lr * 255, (lr * 255).round())  # uint8 levels
    again = HRPatchDataset([folder], scale=2, patch=8, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(ds[5], again[5]))
    other = HRPatchDataset([folder], scale=2, patch=8, seed=4)
    assert not torch.equal(ds[5][1], other[5][1])
    # every image visited once per cycle of len(images) samples
    assert sorted(ds._image_index(i) for i in range(3, 6)) == [0, 1, 2]


def test_lr_patch_matches_lr_of_whole_image(tmp_path):
    folder = write_images(tmp_path / "hr", 1, size=(60, 64))
    ds = HRPatchDataset([folder], scale=3, patch=6, augment=False)
    img = ds.images[0]
    full_hr = to_tensor(img)[0]
    full_lr = matlab_lr(full_hr, 3)
    for i in range(12):
        lr, hr = ds[i]
        # find where the HR patch came from, then compare LR with the whole image's LR there
        hits = [(y, x) for y in range(0, 60 - 18 + 1, 3) for x in range(0, 63 - 18 + 1, 3)
                if torch.equal(full_hr[:, y:y + 18, x:x + 18], hr)]
        assert hits
        y, x = hits[0]
        assert torch.allclose(full_lr[:, y // 3:y // 3 + 6, x // 3:x // 3 + 6], lr, atol=1e-6)


def test_small_images_skipped_or_error(tmp_path):
    folder = write_images(tmp_path / "hr", 2, size=(40, 48))
    write_images(tmp_path / "hr" / "small", 1, size=(12, 12))
    ds = HRPatchDataset([folder], scale=2, patch=8)
    assert len(ds.images) == 2 and len(ds.skipped) == 1
    with pytest.raises(ValueError, match="smaller"):
        HRPatchDataset([folder], scale=4, patch=16)


def test_scale_augmentation_adds_shrunk_copies(tmp_path):
    folder = write_images(tmp_path / "hr", 2, size=(40, 48))
    plain = HRPatchDataset([folder], scale=2, patch=8)
    ds = HRPatchDataset([folder], scale=2, patch=8, scale_aug=(0.75, 0.5, 0.3))
    # 0.75 and 0.5 of 40x48 are 30x36 and 20x24; 0.3 gives 12x15 -> 12x14, under the 16-px HR patch
    assert [img.shape for img in ds.images] == [(40, 48, 3), (30, 36, 3), (20, 24, 3)] * 2
    assert (ds.shrunk_count, ds.shrunk_skipped) == (4, 2) and ds.paths == [plain.paths[0]] * 3 + [plain.paths[1]] * 3
    assert np.array_equal(ds.images[0], plain.images[0])
    original = cv2.imread(str(plain.paths[1]))[:, :, ::-1]
    # MATLAB's imresize on uint8: resized in float64, halves rounded up
    resized = imresize(torch.from_numpy(original.copy()).permute(2, 0, 1).double(), 0.5)
    expected = torch.floor(resized + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
    assert np.array_equal(ds.images[5], expected.numpy())
    lr, hr = ds[1]  # items come from the copies too, with the copies' own LR
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16)
    flat = np.full((21, 30, 3), 77, np.uint8)
    assert np.array_equal(shrink(flat, 0.5), np.full((11, 15, 3), 77, np.uint8))
    for bad in ((1.0,), (0.0,), (-0.5,), (2,)):
        with pytest.raises(ValueError, match="between 0 and 1"):
            HRPatchDataset([folder], scale=2, patch=8, scale_aug=bad)


def test_workers_give_the_same_batches(tmp_path):
    folder = write_images(tmp_path / "hr", 3)
    ds = HRPatchDataset([folder], scale=2, patch=8)

    def batches(workers):
        loader = DataLoader(ds, batch_size=4, sampler=SampleRange(4, 16), num_workers=workers,
                            worker_init_fn=worker_init if workers else None)
        return [hr for _, hr in loader]
    serial, parallel = batches(0), batches(2)
    assert len(serial) == 3 and all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_load_validation(tmp_path):
    folder = write_images(tmp_path / "val", 2, size=(41, 50))
    items = load_validation(folder, scale=4)
    assert [i.name for i in items] == ["img0", "img1"]
    assert items[0].hr.shape == (40, 48, 3) and items[0].lr.shape == (1, 3, 10, 12)


def test_degraded_items(tmp_path):
    folder = write_images(tmp_path / "hr", 2, size=(40, 48))
    plain = HRPatchDataset([folder], scale=2, patch=8, seed=1)
    ds = HRPatchDataset([folder], scale=2, patch=8, seed=1, degradation="realesrgan")
    again = HRPatchDataset([folder], scale=2, patch=8, seed=1, degradation="realesrgan")
    for i in (0, 3, 17):
        lr, hr = ds[i]
        assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16)
        assert torch.equal(hr, plain[i][1])  # the same crop; only the LR differs
        assert 0 <= float(lr.min()) and float(lr.max()) <= 1
        assert torch.equal(lr, again[i][0])  # deterministic per sample number
    assert any(not torch.equal(ds[i][0], plain[i][0]) for i in range(4))
    assert HRPatchDataset([folder], scale=2, patch=8, degradation="bicubic").degradation is None
    with pytest.raises(ValueError, match="degradation"):
        HRPatchDataset([folder], scale=2, patch=8, degradation="jpeg-only")


def test_block_aligned_crops_put_the_jpeg_grid_on_multiples_of_8(tmp_path):
    from sr_cli.degrade_presets import Pipeline, Stage
    rng = np.random.default_rng(3)
    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(3):  # smooth images, where JPEG's block edges are the largest steps
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img{i}.png"), cv2.resize(small, (192, 192), interpolation=cv2.INTER_CUBIC))
    jpeg_only = Pipeline(first=Stage(blur_prob=0.0, noise_prob=0.0, jpeg_range=(10, 10)), at_lr_size=True,
                         final_sinc_prob=0.0)

    def strongest_phases(ds, i):
        y = ds[i][0].mean(0).numpy()
        across = np.abs(np.diff(y, axis=1)).mean(0)  # [k]: the step between columns k and k + 1
        down = np.abs(np.diff(y, axis=0)).mean(1)
        return [int(np.argmax([steps[p::8].mean() for p in range(8)])) for steps in (across, down)]

    aligned = HRPatchDataset([folder], scale=2, patch=32, seed=0, degradation=jpeg_only, block_aligned=True)
    plain = HRPatchDataset([folder], scale=2, patch=32, seed=0, degradation=jpeg_only)
    items = range(40)
    assert all(strongest_phases(aligned, i) == [7, 7] for i in items)  # block edges after pixels 7, 15, ...
    assert any(strongest_phases(plain, i) != [7, 7] for i in items)  # crops near the top or left edge
    assert all(torch.equal(aligned[i][1], plain[i][1]) for i in items)  # the same HR crops


def test_sharded_sample_range_covers_each_batch_once():
    world, batch = 3, 6
    shards = [list(SampleRange(12, 30, batch=batch, rank=r, world_size=world)) for r in range(world)]
    assert all(len(s) == len(SampleRange(12, 30, batch=batch, rank=r, world_size=world)) == 6
               for r, s in enumerate(shards))
    for step in range(3):  # each global batch is split between the ranks, in order
        merged = [n for s in shards for n in s[step * 2:step * 2 + 2]]
        assert merged == list(range(12 + step * batch, 12 + (step + 1) * batch))
    assert list(SampleRange(4, 8)) == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="multiple"):
        SampleRange(0, 10, batch=5, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        SampleRange(0, 10, batch=4, rank=2, world_size=2)
