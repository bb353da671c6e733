"""`sr data` and datasets by name: a local HTTP server on 127.0.0.1 serves a tiny synthetic catalogue
(a few small PNGs); the shipped catalogue is swapped for it. No test touches the network or ../shared
(the check against ../shared/data/sources.json skips cleanly where it is absent)."""
import hashlib
import http.server
import io
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import SHARED_DATA, smooth_image
from sr_cli import datasets
from sr_cli.cli import cli
from test_pull import Server  # the same Range-aware test server as `sr models pull`'s tests


def png_bytes(seed: int, size: int = 24) -> bytes:
    pixels = np.roll(smooth_image(size, size, 3), seed * 3, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


SETS = {"Tiny": {"a.png": png_bytes(0), "b.png": png_bytes(1), "c.png": png_bytes(2, size=40)},
        "Other": {"d.png": png_bytes(3)}}


def write_catalogue(path, base_url, files=SETS, paths=None):
    """A datasets.toml naming ``files`` at ``base_url/up/NAME/<upstream name>`` (paths: name -> upstream)."""
    paths = paths or {}
    lines = []
    for name, blobs in files.items():
        lines += [f"[{name}]", 'kind = "benchmark"', 'description = "a test set"', 'repo = "someone/sets"',
                  f'commit = "{"0" * 40}"', 'licence = "test"', f'base = "{base_url}/up/{name}/"', "files = ["]
        for file, blob in blobs.items():
            upstream = paths.get(file)
            extra = f', path = "{upstream}"' if upstream else ""
            lines.append(f'  {{name = "{file}", sha256 = "{hashlib.sha256(blob).hexdigest()}", '
                         f'size = {len(blob)}{extra}}},')
        lines += ["]", ""]
    path.write_text("\n".join(lines))


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """The server holds every file at up/NAME/FILE (the publisher) and mirror/NAME/FILE (a mirror);
    c.png is published under another name upstream (as BSD100's files are)."""
    monkeypatch.setenv("SR_CACHE_DIR", str(tmp_path / "cache"))
    with Server() as server:
        for name, blobs in SETS.items():
            for file, blob in blobs.items():
                upstream = "c_HR.png" if file == "c.png" else file
                server.files[f"up/{name}/{upstream}"] = blob
                server.files[f"mirror/{name}/{file}"] = blob
        catalogue = tmp_path / "datasets.toml"
        write_catalogue(catalogue, server.url, paths={"c.png": "c_HR.png"})
        monkeypatch.setattr(datasets, "CATALOGUE_FILE", catalogue)
        yield server, tmp_path / "cache" / "data"


def run(*args):
    return CliRunner().invoke(cli, list(args))


def pull(*args):
    return run("data", "pull", *args, "--quiet")


def folder_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_pull_verifies_every_file_and_marks_the_set(setup):
    server, data = setup
    assert not datasets.catalogue()["Tiny"].present
    result = pull("Tiny")
    assert result.exit_code == 0, result.output
    assert "Tiny" in result.output and "3 of 3 files downloaded, all verified" in result.output
    for file, blob in SETS["Tiny"].items():
        assert (data / "Tiny" / file).read_bytes() == blob
    assert folder_files(data / "Tiny") == [datasets.MARKER, "a.png", "b.png", "c.png"]
    assert sorted(r[0] for r in server.requests) == ["up/Tiny/a.png", "up/Tiny/b.png", "up/Tiny/c_HR.png"]
    assert datasets.catalogue()["Tiny"].present and not datasets.catalogue()["Other"].present

    listed = {row["name"]: row for row in json.loads(run("data", "list", "--json").output)}
    assert listed["Tiny"]["pulled"] and not listed["Other"]["pulled"]
    assert listed["Tiny"]["images"] == 3 and listed["Tiny"]["size"] == sum(map(len, SETS["Tiny"].values()))

    requests = len(server.requests)
    again = pull("Tiny")
    assert again.exit_code == 0 and "already there, verified" in again.output
    assert len(server.requests) == requests  # nothing fetched twice


def test_list_is_a_table_and_needs_no_network(setup):
    server, _ = setup
    result = run("data", "list")
    assert result.exit_code == 0, result.output
    assert "Tiny" in result.output and "Other" in result.output
    assert server.requests == []


def test_tampered_file_is_refused_and_the_set_is_not_present(setup):
    server, data = setup
    server.files["up/Tiny/b.png"] = SETS["Tiny"]["b.png"][:-4] + b"XXXX"  # same size, other bytes
    result = pull("Tiny")
    assert result.exit_code == 1
    assert "does not match its published hash" in result.output
    assert len(result.output.strip().splitlines()) == 1
    files = folder_files(data / "Tiny")
    assert "b.png" not in files and "b.png.part" not in files and datasets.MARKER not in files
    assert not datasets.catalogue()["Tiny"].present
    # What was verified stays; once the server is right, the pull finishes without fetching a.png again.
    server.files["up/Tiny/b.png"] = SETS["Tiny"]["b.png"]
    server.requests.clear()
    assert pull("Tiny").exit_code == 0
    assert "up/Tiny/a.png" not in [r[0] for r in server.requests]
    assert datasets.catalogue()["Tiny"].present


def test_interrupted_download_resumes(setup):
    server, data = setup
    blob = SETS["Tiny"]["c.png"]
    half = len(blob) // 2
    server.cut["up/Tiny/c_HR.png"] = half
    result = pull("Tiny")
    assert result.exit_code == 1
    assert f"stopped at {half:,} of {len(blob):,} bytes" in result.output
    assert (data / "Tiny" / "c.png.part").read_bytes() == blob[:half]
    assert not datasets.catalogue()["Tiny"].present

    result = pull("Tiny")
    assert result.exit_code == 0, result.output
    assert server.requests[-1] == ("up/Tiny/c_HR.png", f"bytes={half}-")  # only the rest was asked for
    assert (data / "Tiny" / "c.png").read_bytes() == blob
    assert folder_files(data / "Tiny") == [datasets.MARKER, "a.png", "b.png", "c.png"]


def test_unknown_name_exits_2_with_the_names_and_fetches_nothing(setup):
    server, data = setup
    result = pull("Tiny", "Set6")
    assert result.exit_code == 2
    assert "'Set6'" in result.output and "Tiny, Other" in result.output
    assert server.requests == [] and not data.exists()


def test_no_network_is_one_line_and_nothing_is_present(setup, tmp_path):
    _, data = setup
    closed = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now: the connection is refused
    write_catalogue(datasets.CATALOGUE_FILE, f"http://127.0.0.1:{port}")
    result = pull("Tiny")
    assert result.exit_code == 1
    assert "cannot reach" in result.output and "--mirror" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert folder_files(data / "Tiny") == []
    assert not datasets.catalogue()["Tiny"].present


def test_mirror_is_fetched_and_still_checked(setup):
    server, data = setup
    result = pull("Other", "Tiny", "--mirror", f"{server.url}/mirror/")
    assert result.exit_code == 0, result.output
    assert sorted(r[0] for r in server.requests) == ["mirror/Other/d.png", "mirror/Tiny/a.png",
                                                    "mirror/Tiny/b.png", "mirror/Tiny/c.png"]
    assert datasets.catalogue()["Tiny"].present and datasets.catalogue()["Other"].present

    server.files["mirror/Other/d.png"] = b"not the file"
    result = pull("Other", "--mirror", f"{server.url}/mirror", "--force")
    assert result.exit_code == 1 and "does not match" in result.output
    assert not datasets.catalogue()["Other"].present


def test_mirror_can_be_a_local_folder(setup, tmp_path):
    server, data = setup
    mirror = tmp_path / "copy"
    (mirror / "Tiny").mkdir(parents=True)
    for file, blob in list(SETS["Tiny"].items())[:2]:
        (mirror / "Tiny" / file).write_bytes(blob)
    result = pull("Tiny", "--mirror", str(mirror))
    assert result.exit_code == 1 and "c.png is not in the mirror" in result.output
    (mirror / "Tiny" / "c.png").write_bytes(SETS["Tiny"]["c.png"])
    result = pull("Tiny", "--mirror", str(mirror))
    assert result.exit_code == 0, result.output
    assert server.requests == [] and datasets.catalogue()["Tiny"].present


def test_present_only_while_every_file_is_there_and_the_catalogue_unchanged(setup):
    server, data = setup
    assert pull("Tiny").exit_code == 0
    (data / "Tiny" / "b.png").unlink()
    assert not datasets.catalogue()["Tiny"].present
    assert pull("Tiny").exit_code == 0  # fetches b.png only
    assert datasets.catalogue()["Tiny"].present
    changed = {"Tiny": {**SETS["Tiny"], "a.png": png_bytes(7)}, "Other": SETS["Other"]}
    write_catalogue(datasets.CATALOGUE_FILE, server.url, files=changed, paths={"c.png": "c_HR.png"})
    assert not datasets.catalogue()["Tiny"].present  # the marker was for another file list


def test_eval_takes_a_name_once_pulled(setup, tmp_path, monkeypatch):
    _, data = setup
    monkeypatch.chdir(tmp_path)
    result = run("eval", "Tiny", "-s", "2", "-m", "bicubic", "--json")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: dataset 'Tiny' is not downloaded yet: run `sr data pull Tiny` "
                                     f"(3 images, {sum(map(len, SETS['Tiny'].values())) / 1e6:.1f} MB from "
                                     f"{datasets.catalogue()['Tiny'].files[0].url.split('/')[2]})")
    assert pull("Tiny", "Other").exit_code == 0
    result = run("eval", "Tiny", "other", "-s", "2", "-m", "bicubic", "--json")  # any case
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["results"]["bicubic"]
    assert report["Tiny"]["images"] == 3 and report["Other"]["images"] == 1
    assert datasets.resolve("Tiny/") == datasets.resolve("tiny") == data / "Tiny"
    unknown = run("eval", "Set6", "-s", "2")
    assert unknown.exit_code == 2 and "Tiny, Other" in unknown.output


def test_a_folder_in_the_working_directory_wins(setup, tmp_path, monkeypatch):
    assert pull("Tiny").exit_code == 0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Tiny").mkdir()
    Image.fromarray(smooth_image(32, 32, 3)).save(tmp_path / "Tiny" / "mine.png")
    result = run("eval", "Tiny", "-s", "2", "-m", "bicubic", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"]["bicubic"]["Tiny"]["images"] == 1
    assert datasets.resolve("Tiny").resolve() == (tmp_path / "Tiny").resolve()


def test_train_takes_several_names(setup, tmp_path):
    assert pull("Tiny", "Other").exit_code == 0
    out = tmp_path / "run"
    result = run("train", "--arch", "litesr", "--arch-opt", "num_feat=8", "--arch-opt", "num_blocks=1",
                 "--data", "Tiny", "--data", "Other", "--val", "Tiny", "--scale", "2", "--out", str(out),
                 "--iters", "2", "--patch", "8", "--batch", "2", "--workers", "0", "--threads", "1",
                 "--val-every", "2", "--display", "plain")
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    data = setup[1]
    assert config["data"] == [str(data / "Tiny"), str(data / "Other")] and config["val"] == str(data / "Tiny")
    missing = run("train", "--arch", "litesr", "--data", "Nope", "--out", str(tmp_path / "x"))
    assert missing.exit_code == 2 and "Tiny, Other" in missing.output


def test_shipped_catalogue_is_well_formed():
    sets = datasets.catalogue()
    assert list(sets) == ["Set5", "Set14", "BSD100", "Urban100", "Manga109", "T91", "BSDS200", "General100"]
    counts = {name: len(entry.files) for name, entry in sets.items()}
    assert counts == {"Set5": 5, "Set14": 14, "BSD100": 100, "Urban100": 100, "Manga109": 109, "T91": 91,
                      "BSDS200": 199, "General100": 100}
    for entry in sets.values():
        assert entry.kind in ("benchmark", "train") and re.fullmatch(r"[0-9a-f]{40}", entry.commit)
        assert len({f.name for f in entry.files}) == len(entry.files)
        for f in entry.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size > 0
            assert f.url.startswith(f"https://raw.githubusercontent.com/{entry.repo}/{entry.commit}/")
    assert "302003.png" not in {f.name for f in sets["BSDS200"].files}  # Set5's woman is a crop of it


def test_shipped_catalogue_matches_sources_json():
    sources = SHARED_DATA / "sources.json"
    if not sources.is_file():
        pytest.skip("../shared/data/sources.json is not here")
    listed = json.loads(sources.read_text())["datasets"]
    sets = datasets.catalogue()
    assert list(sets) == list(listed)
    for name, entry in listed.items():
        assert [(f.name, f.url, f.sha256, f.size) for f in sets[name].files] == \
            [(f["name"], f["url"], f["sha256"], f["size"]) for f in entry["files"]]


@pytest.mark.subprocess
def test_data_list_imports_no_torch():
    import subprocess
    import sys
    code = ("import sys; from sr_cli.cli import cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(cli, ['data', 'list']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'cv2', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
