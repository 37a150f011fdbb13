"""Large exports run in worker processes (the second core): same output as
threads, cancel and errors still work, and a script without a main guard is safe."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
import shapely

import engine_helpers as h
from dl_engine.errors import Canceled, InputError
from dl_engine.export import run_export
from dl_engine.export import pools

# 32-px tiles with stride 16 on the 300 x 300 test raster: 18 x 18 = 324 chip positions,
# above pools.PROCESS_MIN_CHIPS, so workers=2 uses processes.
SMALL_TILES = dict(tile_size_x=32, tile_size_y=32, stride_x=16, stride_y=16)


def _labels(rects):
    _, geoms, values = rects
    return h.vector_labels(geoms, values)


@pytest.mark.heavy
def test_process_pool_is_chosen_for_large_exports(rgb, rects, tmp_path):
    assert 18 * 18 >= pools.PROCESS_MIN_CHIPS
    logs = []
    run_export(h.config(rgb[0], tmp_path / "p", metadata_format="Classified_Tiles", labels=_labels(rects),
                        workers=2, **SMALL_TILES), h.recording_events(logs=logs))
    assert any(m.startswith("Cutting chips in 2 worker processes") for m in logs), logs


@pytest.mark.heavy
@pytest.mark.parametrize("fmt", ["Classified_Tiles", "PASCAL_VOC_rectangles"])
def test_processes_and_threads_write_the_same_export(rgb, rects, tmp_path, fmt):
    run_export(h.config(rgb[0], tmp_path / "threads", metadata_format=fmt, labels=_labels(rects), workers=1,
                        **SMALL_TILES))
    run_export(h.config(rgb[0], tmp_path / "procs", metadata_format=fmt, labels=_labels(rects), workers=2,
                        **SMALL_TILES))
    a, b = h.snapshot(tmp_path / "threads"), h.snapshot(tmp_path / "procs")
    assert sorted(a) == sorted(b)
    for name in a:
        if name.endswith((".xml", ".txt", ".tfw")) or "/labels/" in "/" + name:
            assert a[name] == b[name], name
    # Workers merge statistics in another order: equal up to rounding.
    for x, y in zip(h.stats_json(tmp_path / "threads")["BandStatsState"], h.stats_json(tmp_path / "procs")["BandStatsState"]):
        assert (x["Num"], x["Min"], x["Max"]) == (y["Num"], y["Min"], y["Max"])
        assert x["M1"] == pytest.approx(y["M1"], rel=1e-12) and x["M2"] == pytest.approx(y["M2"], rel=1e-12)


def test_cancel_stops_worker_processes_and_leaves_nothing(rgb, rects, tmp_path):
    parent = tmp_path / "exports"
    parent.mkdir()
    calls = []

    def canceled():
        calls.append(time.perf_counter())
        return len(calls) > 2

    t0 = time.perf_counter()
    with pytest.raises(Canceled):
        run_export(h.config(rgb[0], parent / "out", metadata_format="Classified_Tiles", labels=_labels(rects),
                            workers=2, output_nofeature_tiles=True, **SMALL_TILES), cancel=canceled)
    assert time.perf_counter() - calls[-1] < 2.0
    assert time.perf_counter() - t0 < 30
    assert os.listdir(parent) == []


def test_error_inside_a_worker_process_names_the_parameter(rgb, tmp_path):
    # A classified raster with fractional values is found out while chips are cut (in the workers).
    import numpy as np
    frac = np.full((1, h.SIZE, h.SIZE), 1.5, dtype="float32")
    label_path = h.write_raster(tmp_path / "frac.tif", frac)
    from dl_engine.export import RasterLabels
    parent = tmp_path / "exports"
    parent.mkdir()
    with pytest.raises(InputError) as ei:
        run_export(h.config(rgb[0], parent / "out", metadata_format="Classified_Tiles",
                            labels=RasterLabels(label_path), workers=2, **SMALL_TILES))
    assert ei.value.parameter == "IN_CLASS_DATA"
    assert os.listdir(parent) == []


@pytest.mark.heavy
def test_script_without_main_guard_exports_once(rgb, rects, tmp_path):
    """Spawned workers must not run the calling script again."""
    marker = tmp_path / "runs.txt"
    script = tmp_path / "user_script.py"
    _, geoms, values = rects
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(h.REPO)!r})
        import shapely
        from dl_engine.export import ExportConfig, VectorLabels, run_export
        with open({str(marker)!r}, "a") as f:
            f.write("run\\n")
        wkb = [bytes.fromhex(x) for x in {[shapely.to_wkb(g, hex=True) for g in geoms]!r}]
        r = run_export(ExportConfig(raster={rgb[0]!r}, out_folder={str(tmp_path / 'out')!r},
                                    metadata_format="Classified_Tiles", labels=VectorLabels(wkb, {values!r}),
                                    workers=2, tile_size_x=32, tile_size_y=32, stride_x=16, stride_y=16))
        print(r.num_tiles)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "run\n"
    assert int(done.stdout.split()[-1]) > 0
