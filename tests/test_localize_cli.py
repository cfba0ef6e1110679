"""The ``sensloc`` command line, run in-process on the real SqueezeNet weights."""
import numpy as np
import pytest

from sensloc import saliency
from sensloc import weights
from sensloc.data import images
from sensloc.cli.main import build_parser, command_backend, main, running_on


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_classify_real_photos(capsys, squeezenet_file, photo_files):
    status, out, _ = run(capsys, "classify", photo_files["chelsea"], photo_files["coffee"],
                         "--weights", squeezenet_file, "--top", "2")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].endswith("chelsea.png") and lines[3].endswith("coffee.jpg")
    cat_p, cat_index = float(lines[1].split()[0]), int(lines[1].split()[1])
    espresso_p, espresso_index = float(lines[4].split()[0]), int(lines[4].split()[1])
    assert (cat_index, espresso_index) == (285, 967)
    assert "Egyptian cat" in lines[1] and "espresso" in lines[4]
    assert 0.76 <= cat_p <= 0.84 and espresso_p >= 0.97


def test_explain_writes_figure_and_raw_attribution(capsys, tmp_path, squeezenet, squeezenet_file,
                                                   photo_files):
    out_png, out_npy = tmp_path / "heat.png", tmp_path / "raw.npy"
    status, out, _ = run(capsys, "explain", photo_files["chelsea"], "--weights", squeezenet_file,
                         "--method", "deeplift", "--target", "281", "--out", out_png,
                         "--save-npy", out_npy)
    assert status == 0 and "tabby" in out
    assert out_png.stat().st_size > 10_000 and out_png.read_bytes()[:4] == b"\x89PNG"
    raw = np.load(out_npy)
    assert raw.shape == (3, 227, 227) and raw.dtype == np.float32
    x = images.load_batch([photo_files["chelsea"]], squeezenet.preprocessing)
    # Computed as the command computes it: NumPy for one single-pass map, BLAS on one thread.
    # DeepLIFT's secants divide by differences of float32 activations, so another backend or
    # BLAS thread count (another summation order) moves some pixels by far more than rounding.
    with running_on(command_backend(build_parser().parse_args(
            ["explain", "x.png", "--method", "deeplift"]))):
        expected = saliency.deeplift(squeezenet, x, 281)[0]
    np.testing.assert_allclose(raw, expected, rtol=1e-6, atol=1e-9)


def test_user_errors_are_one_line_without_traceback(capsys, tmp_path, squeezenet_file):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    status, _, err = run(capsys, "classify", corrupt, "--weights", squeezenet_file)
    assert status == 2 and "broken.jpg" in err and "Traceback" not in err
    assert err.startswith("sensloc: error:") and err.count("\n") == 1

    status, _, err = run(capsys, "classify", corrupt, "--weights", tmp_path / "missing.h5")
    assert status == 2 and "missing.h5" in err

    with pytest.raises(SystemExit):
        main(["explain", str(corrupt), "--target", "cat"])


def test_weights_convert_and_list(capsys, tmp_path, monkeypatch):
    from conftest import shared_path
    source = shared_path("weights", "squeezenet-1.0-dc", "compressed_SqueezeNet.net")
    monkeypatch.setenv("SENSLOC_CACHE_DIR", str(tmp_path / "cache"))
    status, out, _ = run(capsys, "weights", "list")
    assert status == 0 and "no weights installed" in out
    status, out, _ = run(capsys, "weights", "convert", source)
    assert status == 0 and out.strip().endswith("squeezenet1_0.h5")
    status, out, _ = run(capsys, "weights", "list")
    assert "squeezenet1_0" in out and "e4ab6960ae8cd815" in out


def test_explain_colours_saturate_at_a_high_percentile_and_signed_maps_diverge():
    from sensloc.cli.main import heat_scale
    heat = np.random.default_rng(0).random((100, 100))  # uniform on [0, 1)
    heat[0, 0] = 1000.0  # one pixel holding most of the magnitude, as saliency maps have
    norm, _ = heat_scale(heat, signed=False)
    # The 99th percentile of 10^4 uniform values is 0.99 +- 0.001: the median pixel (0.5)
    # shows half-way up the colour range, where scaling by the maximum puts it at 0.0005.
    assert 0.49 < norm(np.median(heat)) < 0.52 and norm(1000.0) == 1.0 and norm(0.0) == 0.0
    norm, cmap = heat_scale(heat - 0.5, signed=True)
    assert norm(0.0) == 0.5 and norm(-norm.vmax) == 0.0 and 0.48 < norm.vmax < 0.5
    assert min(cmap(0.5)[:3]) > 0.9  # zero is white (near enough) on the diverging map
    assert cmap(1.0)[0] > cmap(1.0)[2] and cmap(0.0)[2] > cmap(0.0)[0]  # red +, blue -
    flat, _ = heat_scale(np.zeros((4, 4)), signed=False)
    assert flat.vmax == 1.0  # an all-zero map still draws


def test_occlusion_shows_its_forward_passes_and_computes_the_same_map(capsys):
    from sensloc.cli.main import attribution_for
    net = weights.load("vgg_small")  # 64 x 64 input: 3 x 3 patches of 32 every 16, + 1 clean pass
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    shown = attribution_for(net, x, "occlusion", 2, progress=True)
    assert "10/10" in capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    np.testing.assert_array_equal(shown, saliency.occlusion(net, x, 2))


def test_fit_boxes_offers_heat_maps_not_cell_features(capsys):
    """Features (activations, class contributions) are read by the objectness protocol, never
    boxed on their own: ``fit-boxes --method`` offers the heat-map methods only."""
    for method in ("activations", "class_contributions"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["fit-boxes", "data", "--method", method, "--out", "m.h5"])
        assert "invalid choice" in capsys.readouterr().err
    args = build_parser().parse_args(["fit-boxes", "data", "--method", "grad_cam", "--out", "m.h5"])
    assert args.method == "grad_cam"
