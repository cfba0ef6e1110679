"""weights.cache: where installed weights live and how names resolve to files."""
from pathlib import Path

import pytest

from sensloc import nets
from sensloc import weights
from sensloc.weights import cache
from sensloc.weights import format as weight_format
from sensloc.data.images import CAFFE_SQUEEZENET


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("SENSLOC_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_cache_dir_precedence(clean_env, tmp_path):
    assert cache.default_cache_dir() == tmp_path / "home" / ".cache" / "sensloc"
    clean_env.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: must be absolute
    assert cache.default_cache_dir() == tmp_path / "home" / ".cache" / "sensloc"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_dir() == tmp_path / "xdg" / "sensloc"
    clean_env.setenv("SENSLOC_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache.default_cache_dir() == tmp_path / "explicit"
    assert cache.installed_path("vgg16") == tmp_path / "explicit" / "weights" / "vgg16.h5"


def _install(folder, seed=0):
    net = nets.random_parameters(nets.build("squeezenet1_0"), seed)
    path = cache.installed_path("squeezenet1_0", folder)
    weight_format.save(path, net, CAFFE_SQUEEZENET, [str(i) for i in range(1000)], "src.net",
                       "cd" * 32)
    return path, net


def test_installed_lists_files_and_skips_broken_ones(tmp_path):
    assert cache.installed(tmp_path) == []
    path, _ = _install(tmp_path)
    broken = path.parent / "vgg16.h5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    (path.parent / ".vgg16.h5.abc.tmp").write_bytes(b"")  # an atomic write in progress
    with pytest.warns(UserWarning, match="vgg16.h5"):
        listing = cache.installed(tmp_path)
    assert listing == [("squeezenet1_0", path, "src.net", "cd" * 32)]


def test_resolve_names_and_paths(tmp_path, clean_env):
    clean_env.setenv("SENSLOC_CACHE_DIR", str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError) as info:
        cache.resolve("vgg16")
    message = str(info.value)
    assert "vgg16 is not installed" in message
    assert "sensloc weights fetch vgg16" in message and "sensloc weights convert FILE" in message
    path, net = _install(tmp_path / "c")
    assert cache.resolve("squeezenet1_0") == path
    assert cache.resolve(str(path)) == path and cache.resolve(path) == path
    with pytest.raises(FileNotFoundError, match="no such weight file"):
        cache.resolve(tmp_path / "elsewhere.h5")
    with pytest.raises(ValueError, match="neither an existing file nor an architecture"):
        cache.resolve("resnet50")
    with pytest.raises(TypeError):
        cache.resolve(16)


def test_load_by_name_uses_the_cache(tmp_path, clean_env):
    clean_env.setenv("SENSLOC_CACHE_DIR", str(tmp_path))
    path, net = _install(tmp_path)
    loaded = weights.load("squeezenet1_0")
    assert loaded.source["path"] == str(path)
    assert (loaded.layer("conv1").weight == net.layer("conv1").weight).all()


def test_name_installed_under_the_wrong_architecture_is_refused(tmp_path):
    path, _ = _install(tmp_path)
    wrong = cache.installed_path("vgg16", tmp_path)
    Path(path).rename(wrong)
    with pytest.raises(ValueError, match="holds squeezenet1_0, not vgg16"):
        weights.load("vgg16", cache_dir=tmp_path)


def test_load_with_download_fetches_only_what_is_missing(tmp_path, clean_env, monkeypatch):
    clean_env.setenv("SENSLOC_CACHE_DIR", str(tmp_path))
    fetched = []

    def fake_fetch(architecture, source=None, cache_dir=None, **options):
        fetched.append(architecture)
        return _install(tmp_path)[0]

    monkeypatch.setattr("sensloc.weights.sources.fetch", fake_fetch)
    with pytest.raises(FileNotFoundError, match="sensloc weights fetch squeezenet1_0"):
        weights.load("squeezenet1_0")
    assert fetched == []
    net = weights.load("squeezenet1_0", download=True)
    assert fetched == ["squeezenet1_0"] and net.name == "squeezenet1_0"
    weights.load("squeezenet1_0", download=True)
    assert fetched == ["squeezenet1_0"]  # installed now: no second download
