"""Thumbnails: each kind of row drawn as the right picture (decoded back and checked), never more than a
few rows, and the same array always giving the same bytes."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from climb_cli.report import thumbs
from climb_cli.report.thumbs import MAX_SAMPLES, PLANE, pick_rows, thumb, trace_svg
from tests.report.conftest import Mini


def decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    raw = base64.b64decode(uri.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)


def test_volume_is_three_mid_slices_drawn_to_scale() -> None:
    vol = np.zeros((20, 30, 40), np.float32)  # (z, y, x)
    vol[:, :4, :4] = 4.0  # a block of the brightest value (sets the display range)
    vol[10, 5:, 5:] = 1.0  # the axial mid-plane
    vol[:, 15, 5:] = 2.0  # the coronal mid-plane
    vol[:, 5:, 20] = 3.0  # the sagittal mid-plane
    t = thumb({"id": "v", "split": "train", "volume": vol, "spacing": [1.0, 1.0, 3.0], "orientation": "LPS"})
    assert t.kind == "volume" and [p.alt for p in t.pictures] == ["axial", "coronal", "sagittal"]
    axial, coronal, sagittal = (decode(p.uri) for p in t.pictures)
    # axial 30 x 40 mm -> 112 x 150 px; coronal: z is 20 x 3 = 60 mm tall, 40 wide -> 150 x 100
    assert axial.shape == (112, 150) and coronal.shape == (150, 100) and sagittal.shape == (150, 75)
    assert all(max(p.width, p.height) == PLANE for p in t.pictures)
    assert 0 < np.median(axial) < np.median(coronal) < np.median(sagittal) < 255  # each its own mid-plane
    assert "20x30x40 voxels" in t.caption


def test_volume_planes_have_superior_at_the_top() -> None:
    z = np.arange(20, dtype=np.float32)[:, None, None]
    vol = np.broadcast_to(z, (20, 30, 40)).copy()  # brighter towards superior (LPS: z runs to S)
    coronal = decode(thumb({"id": "v", "volume": vol, "orientation": "LPS"}).pictures[1].uri)
    assert coronal[:5].mean() > 200 and coronal[-5:].mean() < 50
    flipped = decode(thumb({"id": "v", "volume": vol, "orientation": "LPI"}).pictures[1].uri)
    assert flipped[:5].mean() < 50  # z runs to inferior: row 0 is already the top


def test_video_is_a_strip_of_uniform_frames() -> None:
    video = np.zeros((30, 24, 32), np.uint8)
    for f in range(30):
        video[f] = f * 8
    t = thumb({"id": "c", "split": "test", "video": video, "fps": 15.0})
    assert t.kind == "video" and len(t.pictures) == thumbs.VIDEO_FRAMES
    means = [decode(p.uri).mean() for p in t.pictures]
    assert means == sorted(means) and means[0] == 0 and means[-1] == 29 * 8
    assert t.caption == "frames 1, 8, 15, 23, 30 of 30 at 15 fps"


def test_signal_is_a_few_traces_with_their_names_and_peaks() -> None:
    rate = 500.0
    sig = np.zeros((12, 5000), np.float32)
    sig[1, 1234] = 5.0  # one spike in lead II
    svg, caption = trace_svg(sig, ["I", "II", "III", "AVR"], rate)
    assert caption == "3 of 12 channels, first 10 s at 500 Hz"
    assert svg.count("<polyline") == 3 and ">II</text>" in svg and "AVR" not in svg
    lane = re.findall(r'points="([^"]+)"', svg)[1]
    ys = [float(p.split(",")[1]) for p in lane.split()]
    assert min(ys) < 46 + 5  # the spike survives decimation (top of lane 2)
    long = np.tile(np.sin(np.linspace(0, 600, 3_600_000)), (2, 1))  # 2 h at 500 Hz: only 10 s drawn
    svg, caption = trace_svg(long, [], rate)
    assert "first 10 s" in caption and len(svg) < 20_000


def test_epochs_draw_the_first_epoch_with_its_label() -> None:
    t = thumb(
        {
            "id": "e",
            "split": "train",
            "epochs": np.ones((4, 2, 300), np.float32),
            "epoch_labels": ["W", "N1", "N1", "N2"],
            "channel_names": ["C3", "C4"],
            "sampling_rate": 100.0,
        }
    )
    assert t.kind == "signal" and t.caption.startswith("epoch 1 of 4 (W); 2 of 2 channels, first 3 s")


def test_image_rgb_and_frame_stacks() -> None:
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    t = thumb({"id": "i", "split": "train", "image": rgb})
    px = decode(t.pictures[0].uri)
    assert t.kind == "image" and px.shape == (88, 176, 3) and tuple(px[0, 0]) == (0, 0, 255)  # BGR in PNG
    stack = np.zeros((5, 16, 16), np.uint16)
    t = thumb({"id": "m", "split": "train", "image": stack})
    assert t.caption.startswith("frame 1 of 5")


def test_graph_edges_become_an_adjacency_heat_map() -> None:
    edges = np.array([[0, 1, 2], [1, 2, 0]], np.int32)
    t = thumb(
        {
            "id": "g",
            "split": "train",
            "edge_index": edges,
            "edge_weight": np.ones(3, np.float32),
            "node_features": np.zeros((3, 4), np.float32),
        }
    )
    assert (
        t.kind == "graph"
        and t.caption == "3 nodes, 3 edges (adjacency)"
        and decode(t.pictures[0].uri).ndim == 3
    )


def test_tables_and_text_become_a_few_cells() -> None:
    t = thumb(
        {"id": "r", "split": "train", "labels": ["a"], "values": np.arange(20, dtype=np.float32), "age": "61"}
    )
    assert t.kind == "table" and t.cells["age"] == "61" and t.cells["values"].endswith("...")
    t = thumb({"id": "n", "split": "test", "text": "x" * 1000})
    assert t.kind == "text" and len(t.cells["text"]) == 400


def test_png_bytes_are_deterministic_and_carry_no_metadata() -> None:
    img = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    a, b = thumbs.png(img, "x"), thumbs.png(img.copy(), "x")
    assert a.uri == b.uri
    raw = base64.b64decode(a.uri.split(",", 1)[1])
    assert b"tIME" not in raw and b"tEXt" not in raw and b"iTXt" not in raw


def test_never_more_than_a_few_rows_taking_the_splits_in_turn(minis: Mini) -> None:
    r = minis.recipes["mini-image"]
    out = minis.settings.processed_dir(r.name) / r.content_hash()
    import json

    shards = json.loads((out / "manifest.json").read_text())["shards"]
    rows = pick_rows(out, shards)
    assert len(rows) == 5 <= MAX_SAMPLES
    assert [x["split"] for x in rows] == ["train", "test", "train", "test", "train"]
    assert len(pick_rows(out, shards, limit=2)) == 2
    first = pq.read_table(out / "data" / "train-00000.parquet").column("id")[0].as_py()
    assert rows[0]["id"] == first


def test_the_thumbnail_of_a_real_shard_row_is_the_stored_image(minis: Mini, tmp_path: Path) -> None:
    r = minis.recipes["mini-image"]
    out = minis.settings.processed_dir(r.name) / r.content_hash()
    row = pick_rows(out, [{"name": "data/train-00000.parquet", "split": "train", "rows": 1}], limit=1)[0]
    stored = row["image"]
    t = thumb(row)
    px = cv2.cvtColor(decode(t.pictures[0].uri), cv2.COLOR_BGR2RGB)
    small = cv2.resize(px, (stored.shape[1], stored.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - stored.astype(int)).mean() < 3


def test_a_row_that_cannot_be_drawn_is_named_not_fatal(tmp_path: Path) -> None:
    import pyarrow as pa

    (tmp_path / "data").mkdir()
    table = pa.table(
        {
            "id": ["empty", "ok"],
            "split": ["train", "train"],
            "labels": [["a"], ["b"]],
            "volume": pa.array([[], [0.0] * 8], type=pa.list_(pa.float32())),
            "volume_shape": [[0, 0, 0], [2, 2, 2]],
        }
    )
    pq.write_table(table, tmp_path / "data" / "train-00000.parquet")
    got = thumbs.samples(tmp_path, [{"name": "data/train-00000.parquet", "split": "train", "rows": 2}], 2)
    assert [t.kind for t in got.thumbs] == ["none", "volume"] and got.error == ""
    assert got.thumbs[0].caption.startswith("not drawn: ")
