"""Tests for stochrelax.data.idx_files: look-up order, integrity, IDX parsing, download.

Downloads are served by a loopback HTTP server from copies of the real files;
nothing here touches the internet.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import struct
import threading
from pathlib import Path

import pytest
import torch

from stochrelax.data import fashion_mnist as data, idx_files as data_files

FILE_NAMES = [name for name, _ in data_files.SPLIT_FILES.values()]
UNREACHABLE_URL = "http://127.0.0.1:9/"  # discard port: any attempt to download fails fast

@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keeps the caller's STOCHRELAX_DATA and cache out of every test."""
    monkeypatch.delenv(data_files.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def copy_real_files(real_data_dir: Path, directory: Path) -> Path:
    directory.mkdir()
    for name in FILE_NAMES:
        shutil.copy(real_data_dir / name, directory / name)
    return directory


@pytest.fixture
def copied_dir(tmp_path: Path, real_data_dir: Path) -> Path:
    """A private copy of the four real files that a test may damage."""
    return copy_real_files(real_data_dir, tmp_path / "copy")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keeps request logs out of the test output."""


@pytest.fixture
def serve_directory(request: pytest.FixtureRequest):
    """Returns a function that serves a directory over loopback HTTP and gives its URL."""

    def serve(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join()

        request.addfinalizer(stop)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    return serve


def make_placeholder_dir(path: Path, *, without: str | None = None) -> Path:
    """A directory with (empty) files of the expected names; enough for look-up."""
    path.mkdir(parents=True)
    for name in FILE_NAMES:
        if name != without:
            (path / name).touch()
    return path


def tamper(path: Path) -> None:
    """Flips one bit of a file's decompressed bytes and writes it back as valid gzip."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[-1] ^= 1
    path.write_bytes(gzip.compress(bytes(raw)))


def idx_bytes(magic: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(f">I{len(shape)}I", magic, *shape) + payload


def assert_one_line(error: pytest.ExceptionInfo[data_files.DataError]) -> None:
    assert "\n" not in str(error.value)


# --- look-up order --------------------------------------------------------------


@pytest.fixture
def three_candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """Complete explicit, environment and system directories, the latter two active."""
    explicit = make_placeholder_dir(tmp_path / "explicit")
    from_env = make_placeholder_dir(tmp_path / "env")
    system = make_placeholder_dir(tmp_path / "system")
    monkeypatch.setenv(data_files.ENV_VAR, str(from_env))
    monkeypatch.setattr(data_files, "SYSTEM_DIR", system)
    return explicit, from_env, system


def test_explicit_dir_wins_over_env_and_system(three_candidates: tuple[Path, Path, Path]) -> None:
    explicit, _, _ = three_candidates
    assert data_files.resolve_data_dir(explicit, download_url=UNREACHABLE_URL) == explicit
    assert data_files.resolve_data_dir(str(explicit), download_url=UNREACHABLE_URL) == explicit


def test_env_wins_over_system(three_candidates: tuple[Path, Path, Path]) -> None:
    _, from_env, _ = three_candidates
    assert data_files.resolve_data_dir(download_url=UNREACHABLE_URL) == from_env


def test_system_dir_is_used_when_nothing_is_named(
    three_candidates: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, _, system = three_candidates
    monkeypatch.setenv(data_files.ENV_VAR, "")  # empty counts as unset
    resolved = data_files.resolve_data_dir(cache_dir=tmp_path / "cache", download_url=UNREACHABLE_URL)
    assert resolved == system
    assert not (tmp_path / "cache").exists()


def test_explicit_dir_missing_a_file_raises_without_fallback(
    three_candidates: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    incomplete = make_placeholder_dir(tmp_path / "incomplete", without=FILE_NAMES[1])
    with pytest.raises(data_files.DataError, match=FILE_NAMES[1]) as error:
        data_files.resolve_data_dir(incomplete, download_url=UNREACHABLE_URL)
    assert str(incomplete) in str(error.value)
    assert "data_dir" in str(error.value)
    assert_one_line(error)


def test_env_dir_missing_a_file_raises_without_fallback(
    three_candidates: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    incomplete = make_placeholder_dir(tmp_path / "incomplete", without=FILE_NAMES[2])
    monkeypatch.setenv(data_files.ENV_VAR, str(incomplete))
    with pytest.raises(data_files.DataError, match=data_files.ENV_VAR) as error:
        data_files.resolve_data_dir(download_url=UNREACHABLE_URL)
    assert FILE_NAMES[2] in str(error.value)
    assert_one_line(error)


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_files.default_cache_dir() == tmp_path / "xdg" / "stochrelax" / "fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_files.default_cache_dir() == tmp_path / "home" / ".cache" / "stochrelax" / "fashion-mnist"


# --- integrity ------------------------------------------------------------------


def test_a_copy_of_the_real_files_loads_from_where_it_is(copied_dir: Path) -> None:
    dataset = data.load_fashion_mnist(copied_dir)
    assert dataset.source == copied_dir
    assert dataset.test_labels.shape == (10000,)


def test_tampered_file_fails_its_checksum(copied_dir: Path) -> None:
    tamper(copied_dir / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(data_files.DataError, match="t10k-labels") as error:
        data.load_fashion_mnist(copied_dir)
    assert "checksum" in str(error.value)
    assert_one_line(error)


def test_truncated_gzip_is_reported(copied_dir: Path) -> None:
    path = copied_dir / "train-labels-idx1-ubyte.gz"
    compressed = path.read_bytes()
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(data_files.DataError, match="train-labels") as error:
        data.load_fashion_mnist(copied_dir)
    assert "truncated" in str(error.value)
    assert_one_line(error)


def test_file_that_is_not_gzip_is_reported(copied_dir: Path) -> None:
    (copied_dir / "train-images-idx3-ubyte.gz").write_bytes(b"<html>Not Found</html>\n")
    with pytest.raises(data_files.DataError, match="train-images") as error:
        data.load_fashion_mnist(copied_dir)
    assert "not a valid gzip file" in str(error.value)
    assert_one_line(error)


def test_deleted_file_is_named(copied_dir: Path) -> None:
    (copied_dir / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data_files.DataError, match="t10k-images-idx3-ubyte.gz") as error:
        data.load_fashion_mnist(copied_dir)
    assert_one_line(error)


def flip_gzip_crc(path: Path) -> None:
    """Damages the CRC-32 in the gzip trailer: the deflate stream stays readable."""
    compressed = bytearray(path.read_bytes())
    compressed[-5] ^= 0xFF
    path.write_bytes(bytes(compressed))


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


DAMAGES = {
    # damage -> (what it does to a file, how the message describes the file)
    "checksum": (tamper, "fails its checksum (SHA-256 of the decompressed bytes is "),
    "crc": (flip_gzip_crc, "is not a valid gzip file (CRC check failed"),
    "truncated": (cut_short, "is truncated or corrupt gzip data ("),
}

def named(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Path | None:
    return directory


def exported(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Path | None:
    monkeypatch.setenv(data_files.ENV_VAR, str(directory))
    return None


def installed(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Path | None:
    monkeypatch.setattr(data_files, "SYSTEM_DIR", directory)
    return None


ORIGINS = {
    # how the damaged directory is chosen -> (making it so, giving data_dir; what the message says to do)
    "argument": (named, f"replace it with a fresh copy from {data_files.DOWNLOAD_URL}"),
    "environment": (exported, f"replace it with a fresh copy from {data_files.DOWNLOAD_URL}"),
    "system": (installed,
               f"reinstall the Debian package dataset-fashion-mnist, or point {data_files.ENV_VAR} at a good copy"),
}


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_file_is_named_with_what_to_do_about_it(copied_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                          damage: str, origin: str) -> None:
    damage_file, description = DAMAGES[damage]
    choose, advice = ORIGINS[origin]
    damaged = copied_dir / "train-labels-idx1-ubyte.gz"
    damage_file(damaged)
    with pytest.raises(data_files.DataError) as error:
        data.data_info(choose(copied_dir, monkeypatch))
    assert_one_line(error)
    assert str(error.value).startswith(f"{damaged} {description}")
    assert str(error.value).endswith(f"; {advice}")


# --- read_idx -------------------------------------------------------------------


def test_read_idx_parses_labels() -> None:
    labels = data_files.read_idx(idx_bytes(2049, (4,), bytes([3, 0, 9, 1])))
    assert labels.dtype == torch.uint8
    assert labels.tolist() == [3, 0, 9, 1]


def test_read_idx_parses_images() -> None:
    images = data_files.read_idx(idx_bytes(2051, (2, 3, 4), bytes(range(24))))
    assert images.dtype == torch.uint8
    assert torch.equal(images, torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(idx_bytes(2050, (3,), bytes(3)), id="bad-magic"),
        pytest.param(idx_bytes(2049, (3,), bytes(2)), id="too-little-data"),
        pytest.param(idx_bytes(2051, (2, 2, 2), bytes(9)), id="too-much-data"),
        pytest.param(struct.pack(">II", 2051, 2), id="header-cut-short"),
        pytest.param(b"\x00\x00", id="no-header"),
    ],
)
def test_read_idx_rejects_malformed_bytes(raw: bytes) -> None:
    with pytest.raises(data_files.DataError, match="my-file") as error:
        data_files.read_idx(raw, "my-file")
    assert_one_line(error)


# --- download -------------------------------------------------------------------


@pytest.fixture
def mirror_dir(tmp_path: Path, real_data_dir: Path) -> Path:
    """A directory to serve, holding copies of the real .gz files."""
    return copy_real_files(real_data_dir, tmp_path / "mirror")


def test_download_then_load(mirror_dir: Path, serve_directory, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    data_files.download_fashion_mnist(cache, serve_directory(mirror_dir))
    assert sorted(path.name for path in cache.iterdir()) == sorted(FILE_NAMES)
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "downloading" in notice

    dataset = data.load_fashion_mnist(cache)
    assert dataset.source == cache
    assert dataset.train_images.shape == (60000, 1, 28, 28)

    data_files.download_fashion_mnist(cache, UNREACHABLE_URL)  # complete: nothing to fetch
    assert capsys.readouterr().err == ""


def test_download_of_tampered_file_leaves_nothing_behind(
    mirror_dir: Path, serve_directory, tmp_path: Path
) -> None:
    tampered_name = "train-labels-idx1-ubyte.gz"
    tamper(mirror_dir / tampered_name)
    cache = tmp_path / "cache"
    with pytest.raises(data_files.DataError, match=tampered_name) as error:
        data_files.download_fashion_mnist(cache, serve_directory(mirror_dir))
    assert "checksum" in str(error.value)
    assert "http://127.0.0.1" in str(error.value)
    assert_one_line(error)
    left = {path.name for path in cache.iterdir()}
    assert tampered_name not in left
    assert left <= set(FILE_NAMES)  # in particular, no temporary files


def test_download_of_missing_file_names_the_url(serve_directory, tmp_path: Path) -> None:
    empty_mirror = tmp_path / "empty-mirror"
    empty_mirror.mkdir()
    url = serve_directory(empty_mirror)
    cache = tmp_path / "cache"
    with pytest.raises(data_files.DataError, match=f"{url}{FILE_NAMES[0]}") as error:
        data_files.download_fashion_mnist(cache, url)
    assert_one_line(error)
    assert list(cache.iterdir()) == []


def test_resolve_downloads_into_the_cache_when_nothing_else_is_there(
    mirror_dir: Path, serve_directory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_system = tmp_path / "empty-system"
    empty_system.mkdir()
    monkeypatch.setattr(data_files, "SYSTEM_DIR", empty_system)
    cache = tmp_path / "cache"
    cache.mkdir()
    url = serve_directory(mirror_dir)

    assert data_files.resolve_data_dir(cache_dir=cache, download_url=url) == cache
    assert sorted(path.name for path in cache.iterdir()) == sorted(FILE_NAMES)
    assert data.load_fashion_mnist(cache_dir=cache, download_url=UNREACHABLE_URL).source == cache
