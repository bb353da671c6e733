"""`sr models pull`: a local HTTP server on 127.0.0.1 serves small model files built from our own
modules in the Real-ESRGAN layouts; the catalogue is pointed at it. No test touches the network."""
import hashlib
import http.server
import json
import threading
import urllib.request

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import random_net
from sr_cli import registry, resolve
from sr_cli.cli import cli

RRDB = {"scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}
COMPACT = {"scale": 2, "num_feat": 8, "num_conv": 2, "act_type": "prelu"}


class Server:
    """Serves ``files`` (name -> bytes) with Range support; ``cut[name] = n`` sends the full
    Content-Length but closes after n bytes, once. Every request's path and Range are recorded."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ignore_range = False
        self.announce: dict[str, str | None] = {}  # name -> the Content-Length sent (None: no header)
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                data = server.files.get(name)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                ranged = self.headers.get("Range")
                if ranged and not server.ignore_range:
                    start = int(ranged.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                length = server.announce.get(name, str(len(body)))
                if length is not None:
                    self.send_header("Content-Length", length)
                self.end_headers()
                limit = server.cut.pop(name, None)
                self.wfile.write(body if limit is None else body[:limit])
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def pth_bytes(tmp_path, name, container, net):
    path = tmp_path / name
    torch.save({container: net.state_dict()}, path)
    return path.read_bytes()


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A server with a Real-ESRGAN RRDBNet x4 (params_ema) and a Compact x2 (params), a catalogue
    naming them with their true hashes, and SR_CACHE_DIR in tmp_path."""
    nets = {"tiny_rrdb": random_net("rrdbnet", **RRDB), "tiny_compact": random_net("srvgg", **COMPACT)}
    src = tmp_path / "src"
    src.mkdir()
    blobs = {"tiny_rrdb.pth": pth_bytes(src, "tiny_rrdb.pth", "params_ema", nets["tiny_rrdb"]),
             "tiny_compact.pth": pth_bytes(src, "tiny_compact.pth", "params", nets["tiny_compact"])}
    monkeypatch.setenv("SR_CACHE_DIR", str(tmp_path / "cache"))
    with Server() as server:
        server.files.update(blobs)

        def write_catalogue(**overrides):
            lines = []
            for name, arch, scale in (("tiny_rrdb", "rrdbnet", 4), ("tiny_compact", "srvgg", 2)):
                blob = blobs[f"{name}.pth"]
                fields = {"url": f"{server.url}/{name}.pth", "sha256": hashlib.sha256(blob).hexdigest(),
                          "size": len(blob), "licence": "BSD-3-Clause", "arch": arch, "scale": scale,
                          "description": "a test model"}
                fields.update(overrides.get(name, {}))
                lines.append(f"[{name}]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
            catalogue = tmp_path / "catalogue.toml"
            catalogue.write_text("\n".join(lines) + "\n")
            monkeypatch.setattr(registry, "CATALOGUE_FILE", catalogue)

        write_catalogue()
        yield server, nets, blobs, tmp_path / "cache" / "models", write_catalogue


def pull(*args):
    return CliRunner().invoke(cli, ["models", "pull", *args, "--quiet"])


def cache_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_pull_then_use_by_name(setup, tmp_path):
    server, nets, blobs, cache, _ = setup
    result = pull("tiny_rrdb")
    assert result.exit_code == 0, result.output
    assert "downloaded and verified" in result.output and "--model tiny_rrdb" in result.output
    assert (cache / "tiny_rrdb.pth").read_bytes() == blobs["tiny_rrdb.pth"]
    assert cache_files(cache) == ["tiny_rrdb.pth"]  # no .part left behind

    loaded = resolve.resolve_model("tiny_rrdb", 4)
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), nets["tiny_rrdb"](x))
    assert loaded.name == "tiny_rrdb" and resolve.native_scales("tiny_rrdb") == [4]

    image = tmp_path / "in.png"
    Image.fromarray(np.full((6, 7, 3), 128, np.uint8)).save(image)
    result = CliRunner().invoke(cli, ["upscale", str(image), "-m", "tiny_rrdb", "-s", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "in_x4.png").size == (28, 24)

    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"]).stdout)}
    assert rows["tiny_rrdb"]["installed"] and rows["tiny_rrdb"]["source"] == "catalogue"
    assert not rows["tiny_compact"]["installed"]

    requests = len(server.requests)
    again = pull("tiny_rrdb")
    assert again.exit_code == 0 and "already there, verified" in again.output
    assert len(server.requests) == requests  # a verified copy is not fetched again


def test_pull_by_catalogue_url_and_compact_layout(setup):
    server, nets, _, cache, _ = setup
    result = pull(f"{server.url}/tiny_compact.pth")
    assert result.exit_code == 0, result.output
    loaded = resolve.resolve_model("tiny_compact", 2)
    x = torch.rand(1, 3, 5, 9)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), nets["tiny_compact"](x))


def test_wrong_hash_refused_and_removed(setup):
    server, _, _, cache, write_catalogue = setup
    write_catalogue(tiny_rrdb={"sha256": "0" * 64})
    result = pull("tiny_rrdb")
    assert result.exit_code == 1
    assert "does not match its published hash" in result.output and "removed" in result.output
    assert cache_files(cache) == []
    with pytest.raises(ValueError, match="sr models pull tiny_rrdb"):
        resolve.resolve_model("tiny_rrdb", 4)


def test_wrong_size_refused(setup):
    _, _, blobs, cache, write_catalogue = setup
    write_catalogue(tiny_rrdb={"size": len(blobs["tiny_rrdb.pth"]) + 1})
    result = pull("tiny_rrdb")
    assert result.exit_code == 1 and "does not match" in result.output
    assert cache_files(cache) == []


def test_interrupted_transfer_resumes(setup):
    server, _, blobs, cache, _ = setup
    blob = blobs["tiny_rrdb.pth"]
    half = len(blob) // 2
    server.cut["tiny_rrdb.pth"] = half
    result = pull("tiny_rrdb")
    assert result.exit_code == 1
    assert f"stopped at {half:,} of {len(blob):,} bytes" in result.output and "again to resume" in result.output
    assert cache_files(cache) == ["tiny_rrdb.pth.part"]  # nothing usable under the model's name
    assert (cache / "tiny_rrdb.pth.part").read_bytes() == blob[:half]

    result = pull("tiny_rrdb")
    assert result.exit_code == 0, result.output
    assert server.requests[-1] == ("tiny_rrdb.pth", f"bytes={half}-")  # only the rest was asked for
    assert (cache / "tiny_rrdb.pth").read_bytes() == blob
    assert cache_files(cache) == ["tiny_rrdb.pth"]


def test_interrupted_transfer_restarts_when_the_server_ignores_ranges(setup):
    server, _, blobs, cache, _ = setup
    server.cut["tiny_rrdb.pth"] = 100
    assert pull("tiny_rrdb").exit_code == 1
    server.ignore_range = True
    result = pull("tiny_rrdb")
    assert result.exit_code == 0, result.output
    assert (cache / "tiny_rrdb.pth").read_bytes() == blobs["tiny_rrdb.pth"]


def test_stale_part_from_another_file_is_restarted(setup):
    server, _, blobs, cache, _ = setup
    cache.mkdir(parents=True)
    (cache / "tiny_rrdb.pth.part").write_bytes(b"x" * 100)  # resumes, fails the hash, then starts over
    result = pull("tiny_rrdb")
    assert result.exit_code == 0, result.output
    assert [r for _, r in server.requests[-2:]] == ["bytes=100-", None]
    assert (cache / "tiny_rrdb.pth").read_bytes() == blobs["tiny_rrdb.pth"]


def test_404_is_one_line_and_leaves_nothing(setup):
    server, _, _, cache, write_catalogue = setup
    write_catalogue(tiny_rrdb={"url": f"{server.url}/gone.pth"})
    result = pull("tiny_rrdb")
    assert result.exit_code == 1
    assert "HTTP 404" in result.output and len(result.output.strip().splitlines()) == 1
    assert cache_files(cache) == []


def test_no_network(setup, monkeypatch):
    _, _, _, cache, write_catalogue = setup
    closed = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now: the connection is refused
    write_catalogue(tiny_rrdb={"url": f"http://127.0.0.1:{port}/tiny_rrdb.pth"})
    result = pull("tiny_rrdb")
    assert result.exit_code == 1
    assert "cannot reach" in result.output and "nothing was downloaded" in result.output.lower()
    assert cache_files(cache) == []


def test_missing_model_never_downloads_by_itself(setup, monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted without `sr models pull`")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    result = CliRunner().invoke(cli, ["upscale", str(image), "-m", "tiny_rrdb", "-s", "4", "--quiet"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "not downloaded yet" in lines[0] and "sr models pull tiny_rrdb" in lines[0]


def test_url_outside_the_catalogue_needs_its_hash(setup):
    server, nets, blobs, cache, _ = setup
    server.files["my-model.pth"] = blobs["tiny_compact.pth"]
    url = f"{server.url}/my-model.pth"
    refused = pull(url)
    assert refused.exit_code == 1 and "--sha256" in refused.output and cache_files(cache) == []
    result = pull(url, "--sha256", hashlib.sha256(blobs["tiny_compact.pth"]).hexdigest())
    assert result.exit_code == 0, result.output
    assert "--model my-model" in result.output
    assert resolve.native_scales("my-model") == [2]
    assert resolve.resolve_model("my-model", 2).scale == 2
    assert "my-model" in registry.available_names()


def test_unknown_name_is_refused(setup):
    result = pull("no-such-model")
    assert result.exit_code == 1 and "not in the catalogue" in result.output


def test_shipped_catalogue_is_well_formed():
    entries = registry.catalogue()
    assert {"RealESRGAN_x4plus", "RealESRGAN_x2plus", "RealESRGAN_x4plus_anime_6B", "RealESRNet_x4plus"} <= set(entries)
    assert entries["RealESRGAN_x4plus"].sha256 == "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1"
    assert entries["RealESRGAN_x4plus"].size == 67_040_989
    for entry in entries.values():
        assert entry.url.startswith("https://") and entry.filename.endswith(".pth")
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        assert entry.size > 0 and entry.scale in (2, 4) and entry.arch in ("rrdbnet", "srvgg")
        assert entry.licence and entry.description


# ----------------------------------------------------------------------------- #31: limits, locks, names

def test_an_absurd_content_length_is_refused_before_anything_is_written(setup):
    """Class 6: Content-Length 10^15 was accepted (written until the server stopped, .part kept)."""
    server, nets, blobs, cache, _ = setup
    server.files["huge.pth"] = blobs["tiny_rrdb.pth"]
    server.announce["huge.pth"] = str(10 ** 15)
    digest = hashlib.sha256(blobs["tiny_rrdb.pth"]).hexdigest()
    result = pull(f"{server.url}/huge.pth", "--sha256", digest)
    assert result.exit_code == 1 and "more than --max-size" in result.output, result.output
    assert cache_files(cache) == []
    # A server that announces nothing and sends more than --max-size is cut off; nothing is kept.
    server.files["endless.pth"] = b"x" * 5000
    server.announce["endless.pth"] = None
    result = pull(f"{server.url}/endless.pth", "--sha256", "0" * 64, "--max-size", "4K")
    assert result.exit_code == 1 and "sent more than --max-size" in result.output, result.output
    assert cache_files(cache) == []
    # A catalogue model is held to its published size.
    server.announce["tiny_rrdb.pth"] = str(len(blobs["tiny_rrdb.pth"]) * 10)
    result = pull("tiny_rrdb")
    assert result.exit_code == 1 and "its published size" in result.output and cache_files(cache) == []


def test_no_download_starts_without_the_free_space_for_it(setup, monkeypatch):
    import collections
    from sr_cli import download
    server, nets, blobs, cache, _ = setup
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 1000, 1000))
    result = pull("tiny_rrdb")
    assert result.exit_code == 1 and "free in" in result.output, result.output
    assert cache_files(cache) == []


def test_a_second_pull_of_the_same_file_says_who_holds_it(setup):
    """Class 7: concurrent pulls of one file failed with a raw "[Errno 2] ... .part"."""
    from sr_cli.lock import hold
    server, nets, blobs, cache, _ = setup
    cache.mkdir(parents=True)
    with hold(cache / ".tiny_rrdb.pth.lock", "test", remove=True):  # as a first pull holds it
        result = pull("tiny_rrdb")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "being downloaded" in lines[0] and "in use by sr (pid" in lines[0], lines
    assert cache_files(cache) == []
    assert pull("tiny_rrdb").exit_code == 0 and cache_files(cache) == ["tiny_rrdb.pth"]  # lock file removed


@pytest.mark.parametrize("bad", ["evil\x1b[2Jname", "new%0Aline", "..", "-rf", ".hidden", "a..b"])
def test_pull_names_are_restricted_to_a_safe_set(setup, bad):
    """Class 15: names with ESC, newline, '..', a leading '-' or '.' entered the cache (ESC printed raw)."""
    server, nets, blobs, cache, _ = setup
    import urllib.parse
    digest = hashlib.sha256(blobs["tiny_rrdb.pth"]).hexdigest()
    path = f"{urllib.parse.quote(bad, safe='%')}.pth"
    server.files[path] = blobs["tiny_rrdb.pth"]  # served: only the name can stop it
    result = pull(f"{server.url}/{path}", "--sha256", digest)
    assert result.exit_code != 0 and "\x1b" not in result.output, result.output
    assert cache_files(cache) == []


@pytest.mark.parametrize("taken", ["default", "bicubic", "tiny_compact"])
def test_a_pulled_file_never_shadows_a_shipped_catalogue_or_builtin_name(setup, taken):
    server, nets, blobs, cache, _ = setup
    server.files[f"elsewhere/{taken}.pth"] = blobs["tiny_rrdb.pth"]
    digest = hashlib.sha256(blobs["tiny_rrdb.pth"]).hexdigest()
    result = pull(f"{server.url}/elsewhere/{taken}.pth", "--sha256", digest)
    assert result.exit_code == 1 and "--name" in result.output and cache_files(cache) == [], result.output
    result = pull(f"{server.url}/elsewhere/{taken}.pth", "--sha256", digest, "--name", "mine")
    assert result.exit_code == 0 and "--model mine" in result.output and cache_files(cache) == ["mine.pth"]


def test_a_bad_sha256_is_a_usage_error(setup):
    server, *_ = setup
    result = pull(f"{server.url}/x.pth", "--sha256", "zz")
    assert result.exit_code == 2 and "64 hex digits" in result.output
