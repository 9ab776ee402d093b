"""Tests for vlkit.images: every good kind of input loads as RGB, every bad one is an ImageError
that names the input and says what to do."""

import base64
import http.server
import io
import random
import struct
import sys
import threading
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from vlkit.errors import ImageError
from vlkit.images import describe_source, image_to_data_url, load_image

SIZE = (40, 30)  # width, height: deliberately not square so rotations show


def gradient(mode="RGB", size=SIZE):
    """A small image with varied pixels, so lossy formats and rotations are testable."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.dstack([x, y, 255 - x])).convert(mode)


def encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def fake_png(width, height):
    """A tiny PNG whose header claims `width` x `height`: a decompression bomb in 60 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + png_chunk(b"IEND", b"")
    )


def raises_image_error(source, *fragments, **kwargs):
    """Assert that loading `source` raises ImageError whose message has every fragment."""
    with pytest.raises(ImageError) as info:
        load_image(source, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# Good inputs


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_each_format_loads_as_rgb(tmp_path, fmt):
    path = tmp_path / f"picture.{fmt.lower()}"
    gradient().save(path, format=fmt)
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == SIZE
    assert load_image(str(path)).size == SIZE


def test_exif_orientation_6_swaps_width_and_height(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    gradient().save(path, exif=exif)
    assert load_image(path).size == (SIZE[1], SIZE[0])


def test_palette_transparency_is_composited_on_white():
    palette_image = Image.new("P", SIZE, 0)
    palette_image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette_image.paste(1, (0, 0, 10, 10))
    data = encode(palette_image, "PNG", transparency=1)
    image = load_image(data)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((20, 20)) == (255, 0, 0)


def test_rgba_is_composited_on_white():
    rgba = Image.new("RGBA", SIZE, (255, 0, 0, 0))
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 128))
    image = load_image(encode(rgba, "PNG"))
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 1)) == (255, 0, 0)
    assert all(126 <= value <= 128 for value in image.getpixel((2, 2)))


def test_grayscale_with_alpha_is_composited_on_white():
    image = load_image(Image.new("LA", SIZE, (0, 0)))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", SIZE, (0, 255, 255, 0)), "JPEG", quality=95)
    red, green, blue = load_image(data).getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60


def test_one_bit_image():
    bilevel = Image.new("1", SIZE, 0)
    bilevel.putpixel((3, 3), 1)
    image = load_image(encode(bilevel, "PNG"))
    assert image.getpixel((0, 0)) == (0, 0, 0)
    assert image.getpixel((3, 3)) == (255, 255, 255)


def test_16bit_png_is_scaled_not_clipped():
    values = np.linspace(1000, 3000, SIZE[0] * SIZE[1]).reshape(SIZE[1], SIZE[0])
    data = encode(Image.fromarray(values.astype(np.uint16)), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    pixels = np.asarray(load_image(data))
    assert pixels.min() == 0 and pixels.max() == 255


def test_uint16_array_is_scaled_not_clipped():
    values = np.linspace(1000, 3000, 12 * 10).reshape(12, 10).astype(np.uint16)
    pixels = np.asarray(load_image(values))
    assert pixels.shape == (12, 10, 3)
    assert pixels.min() == 0 and pixels.max() == 255
    assert np.all(np.diff(pixels[:, :, 0].ravel().astype(int)) >= 0)  # order is kept


def test_float_arrays():
    unit = np.linspace(0.0, 1.0, 20).reshape(4, 5)
    assert np.asarray(load_image(unit))[:, :, 0].tolist() == np.rint(unit * 255).tolist()
    half = np.full((4, 5), 0.5)
    assert np.asarray(load_image(half)).max() == 128  # in [0, 1]: multiplied, not stretched
    wide = np.linspace(-50.0, 400.0, 20).reshape(4, 5)
    pixels = np.asarray(load_image(wide))
    assert pixels.min() == 0 and pixels.max() == 255
    rgb = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
    assert load_image(rgb).size == (7, 6)


def test_constant_images_do_not_divide_by_zero():
    for array in (np.full((4, 5), 7.5), np.full((4, 5), 1000, dtype=np.uint16)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pixels = np.asarray(load_image(array))
        assert pixels.shape == (4, 5, 3)
        assert len(np.unique(pixels)) == 1


def test_grayscale_and_other_arrays():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    for array in (gray, gray[:, :, None]):
        image = load_image(array)
        assert image.mode == "RGB" and image.size == (5, 4)
        assert image.getpixel((4, 3)) == (19, 19, 19)
    assert load_image(np.eye(3, dtype=bool)).getpixel((1, 1)) == (255, 255, 255)
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)  # fully transparent black
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_pil_image_input_is_not_modified():
    original = Image.new("L", SIZE, 50)
    image = load_image(original)
    assert image.mode == "RGB" and original.mode == "L"
    assert image is not original


def test_dicom_file_and_bytes():
    pydicom_data = pytest.importorskip("pydicom.data")
    path = pydicom_data.get_testdata_file("CT_small.dcm")
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (128, 128)
    pixels = np.asarray(image)
    assert pixels.min() == 0 and pixels.max() == 255  # min-max: CT_small has no window
    with open(path, "rb") as file:
        assert np.array_equal(np.asarray(load_image(file.read())), pixels)


def test_dicom_monochrome1_is_inverted(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    dataset.PhotometricInterpretation = "MONOCHROME1"
    inverted = tmp_path / "inverted.dcm"
    dataset.save_as(inverted)
    assert np.array_equal(np.asarray(load_image(inverted)), 255 - np.asarray(load_image(path)))


def test_dicom_window_and_colour_frames():
    pydicom_data = pytest.importorskip("pydicom.data")
    windowed = np.asarray(load_image(pydicom_data.get_testdata_file("MR_small.dcm")))
    assert windowed.shape == (64, 64, 3)
    colour = np.asarray(load_image(pydicom_data.get_testdata_file("SC_rgb_rle_2frame.dcm")))
    assert colour.shape == (100, 100, 3)
    assert not np.array_equal(colour[:, :, 0], colour[:, :, 1])  # colour kept, not grey


def test_dicom_without_pydicom_says_how_to_install(monkeypatch, tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    raises_image_error(path, str(path), "pip install pydicom")


def test_bytes_and_data_url_round_trip():
    original = gradient()
    assert np.array_equal(np.asarray(load_image(encode(original, "PNG"))), np.asarray(original))
    assert load_image(bytearray(encode(original, "BMP"))).size == SIZE
    url = image_to_data_url(original)
    assert url.startswith("data:image/png;base64,")
    assert np.array_equal(np.asarray(load_image(url)), np.asarray(original))
    assert image_to_data_url(encode(original, "PNG"), format="jpg").startswith("data:image/jpeg;")


def test_describe_source():
    assert describe_source("data:image/png;base64," + "A" * 1000) == "data URL (1,022 chars)"
    assert describe_source(b"x" * 512) == "bytes (512 bytes)"
    assert describe_source(np.zeros((3, 4, 5))).startswith("NumPy array of shape (3, 4, 5)")
    assert describe_source("cat.png") == "cat.png"
    assert len(describe_source("A" * 10_000)) < 120


# HTTP: a real server on 127.0.0.1 in a thread


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/good.png":
            self.reply(encode(gradient(), "PNG"), "image/png")
        elif self.path == "/big":
            self.reply(b"\0" * 50_000, "image/png", length=False)
        elif self.path == "/big-declared":
            self.reply(b"\0" * 50_000, "image/png")
        elif self.path == "/page.html":
            self.reply(b"<html></html>", "text/html; charset=utf-8")
        elif self.path == "/slow":
            time.sleep(1.0)
            self.reply(encode(gradient(), "PNG"), "image/png")
        else:
            self.send_error(404)

    def reply(self, body, content_type, length=True):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up on purpose

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy set in the environment would intercept requests to the local test server.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_http_url_loads(server):
    image = load_image(f"{server}/good.png")
    assert image.mode == "RGB" and image.size == SIZE


def test_http_404(server):
    url = f"{server}/missing.png"
    raises_image_error(url, url, "404", "check the URL")


def test_http_body_larger_than_max_bytes(server):
    for path in ("/big", "/big-declared"):
        url = server + path
        raises_image_error(url, url, "max_bytes=1,000", "pass a larger max_bytes", max_bytes=1000)


def test_http_web_page_is_not_an_image(server):
    url = f"{server}/page.html"
    raises_image_error(url, url, "text/html", "Copy image address")


def test_http_timeout(server):
    url = f"{server}/slow"
    started = time.monotonic()
    raises_image_error(url, url, "did not answer within 0.2 s", "larger timeout", timeout=0.2)
    assert time.monotonic() - started < 1.0


def test_unreachable_host():
    url = "http://127.0.0.1:9/nothing.png"  # port 9 (discard) is closed on test machines
    raises_image_error(url, url, "could not reach", "network")


# Bad inputs: each is an ImageError naming the input and saying what to do


def test_missing_path(tmp_path):
    path = tmp_path / "nope.png"
    raises_image_error(path, "no such file", str(path), "check the spelling")
    raises_image_error(str(path), "no such file", str(path))


def test_directory(tmp_path):
    raises_image_error(tmp_path, str(tmp_path), "is a folder", "pass one of the files")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    raises_image_error(path, str(path), "empty", "re-download")


def test_truncated_png(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    raises_image_error(path, str(path), "truncated or corrupt", "re-download")


def test_random_bytes():
    data = bytes(random.Random(2).randrange(256) for _ in range(512))
    raises_image_error(data, "bytes (512 bytes)", "not an image PIL can read", "convert it")


def test_bad_base64():
    url = "data:image/png;base64,iVBORw0KGgo!!!not-base64"
    raises_image_error(url, f"data URL ({len(url)} chars)", "base64", "copied whole")


def test_data_url_of_text():
    url = "data:text/plain;base64," + base64.b64encode(b"hello").decode()
    raises_image_error(url, "data URL (", "text/plain", "data:image/png;base64")
    untyped = "data:;base64," + base64.b64encode(b"hello there").decode()
    raises_image_error(untyped, "data URL (", "not an image PIL can read")


def test_decompression_bomb_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(fake_png(100_000, 100_000))
    filters = list(warnings.filters)
    raises_image_error(path, str(path), "downscale")
    assert warnings.filters == filters  # the warning filter change was local
    # Between PIL's warning and error limits PIL only warns; that must still be refused.
    raises_image_error(fake_png(10_000, 10_000), "bytes (", "downscale")


def test_max_pixels(tmp_path):
    path = tmp_path / "picture.png"
    gradient().save(path)
    raises_image_error(path, str(path), "1,200 pixels", "max_pixels=1,000", max_pixels=1000)
    raises_image_error(np.zeros((40, 30)), "NumPy array", "max_pixels", max_pixels=1000)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images(tmp_path, fmt):
    path = tmp_path / f"animated.{fmt.lower()}"
    frames = [Image.new("RGB", SIZE, colour) for colour in ("red", "green", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    raises_image_error(path, str(path), f"animated {fmt} with 3 frames", "single image")


def test_multipage_tiff_gives_first_page():
    pages = [Image.new("RGB", SIZE, colour) for colour in ("red", "green")]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert load_image(data).getpixel((0, 0)) == (255, 0, 0)


def test_nan_array():
    array = np.ones((4, 5))
    array[1, 1] = np.nan
    raises_image_error(array, "NumPy array of shape (4, 5)", "NaN", "np.nan_to_num")


def test_five_dimensional_array():
    raises_image_error(np.zeros((1, 2, 3, 4, 5)), "shape (1, 2, 3, 4, 5)", "expected shape HxW")


def test_channels_first_array_gets_a_hint():
    raises_image_error(np.zeros((3, 8, 8)), "shape (3, 8, 8)", "transpose(1, 2, 0)")


def test_unsupported_type():
    raises_image_error(42, "int", "a file path", "a NumPy array")


def test_unsupported_url_scheme():
    raises_image_error("ftp://example.com/cat.png", "ftp://example.com/cat.png", "http(s)")
    raises_image_error("file:///tmp/cat.png", "file:///tmp/cat.png", "pass the path itself")


def test_corrupt_dicom(tmp_path):
    pydicom_data = pytest.importorskip("pydicom.data")
    with open(pydicom_data.get_testdata_file("CT_small.dcm"), "rb") as file:
        data = file.read()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])
    raises_image_error(path, str(path), "DICOM")


@pytest.mark.filterwarnings("ignore:.*tag:UserWarning")  # PIL's notes on mangled TIFF tags
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_damaged_files_only_raise_image_error(fmt):
    # Flip bytes all over a valid file: loading must either work or raise ImageError, never
    # leak a decoder's own exception.
    data = encode(gradient(), fmt)
    rng = random.Random(fmt)
    for _ in range(40):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            load_image(bytes(damaged))
        except ImageError:
            pass
