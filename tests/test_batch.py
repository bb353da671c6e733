import numpy as np
import torch
from PIL import Image

from conftest import smooth_image
from sr_cli.batch import Job
from sr_cli.runner import ThreadChooser, run_jobs


def test_thread_chooser_tries_both_then_picks_by_measurement():
    chooser = ThreadChooser(2)
    assert chooser.threads() == 2
    chooser.record_model(2, 1.0, 1.0)
    assert chooser.threads() == 1
    chooser.record_model(1, 1.6, 1.0)
    chooser.record_io(1.0, 1.0)
    # all cores: 1.0 model + 1.0 I/O in series; one fewer: max(1.6, 1.0) overlapped -> fewer wins
    assert chooser.threads() == 1
    heavy = ThreadChooser(2)
    heavy.record_model(2, 10.0, 1.0)
    heavy.record_model(1, 18.0, 1.0)
    heavy.record_io(1.0, 1.0)
    # a model-bound batch (large images): keep every core on the model
    assert heavy.threads() == 2


class TorchThreads:
    """The thread controls of a torch engine on the CPU."""

    @property
    def threads(self):
        return torch.get_num_threads()

    def set_threads(self, count):
        torch.set_num_threads(count)
        return True


class FakeUpscaler:
    """Nearest-neighbour x2 that records torch's thread count at each call."""

    def __init__(self):
        self.threads = []
        self.engines = [TorchThreads()]

    def __call__(self, pixels):
        self.threads.append(torch.get_num_threads())
        return np.repeat(np.repeat(pixels, 2, axis=0), 2, axis=1)


def test_batch_outputs_are_right_and_threads_are_restored(tmp_path):
    sources = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.fromarray(smooth_image(6 + i, 7, 3)).save(path)
        sources.append(path)
    jobs = [Job(p, tmp_path / "out" / p.name) for p in sources]
    fake = FakeUpscaler()
    torch.set_num_threads(2)
    results = run_jobs(jobs, fake, existing="error")
    assert [r.status for r in results] == ["ok"] * 5
    assert fake.threads[:2] == [2, 1]  # both settings are measured first
    assert torch.get_num_threads() == 2
    for path in sources:
        src = np.asarray(Image.open(path))
        out = np.asarray(Image.open(tmp_path / "out" / path.name))
        assert np.array_equal(out, np.repeat(np.repeat(src, 2, axis=0), 2, axis=1))


def test_a_failed_write_loses_no_other_output_and_results_keep_job_order(tmp_path):
    sources = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(smooth_image(5, 5 + i, 3)).save(path)
        sources.append(path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    jobs = [Job(p, (tmp_path / "blocker" if i == 2 else tmp_path / "out") / p.name) for i, p in enumerate(sources)]
    results = run_jobs(jobs, FakeUpscaler(), existing="error")
    assert [r.source for r in results] == [str(p) for p in sources]  # several writes run at once
    assert [r.status for r in results] == ["ok", "ok", "failed", "ok", "ok", "ok"]
    for i in (0, 1, 3, 4, 5):  # in particular the image right after the failed write
        assert (tmp_path / "out" / f"{i}.png").is_file()
