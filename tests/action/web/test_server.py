"""The web API on a real server process: predictions equal the CLI's, and every failure is clean JSON."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest
import requests

from action.models.model_dir import ModelConfig
from action.predict import Predictor
from action.video.dataset import Sampling
from action.video.synthetic import CLASSES
from shared.weights import save_weights
from tests.action.web_server import Server


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) c3d_gru on 8x32x32 clips: the API tests need a real model, not an accurate one."""
    import torch

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("served")
    config = ModelConfig("c3d_gru", list(CLASSES), Sampling(frames=8, size=(32, 32)).to_dict())
    config.save(out)
    save_weights(config.build(), out / "model.pt")
    return out


@pytest.fixture(scope="module")
def links(tiny_videos: Path):
    from tests.action.link_server import LinkServer

    server = LinkServer(sorted(tiny_videos.glob("Wave/*.mp4"))[0])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(small_model: Path, links, tmp_path_factory: pytest.TempPathFactory):
    extra = ("--allow-url-host", "127.0.0.1", "--allow-url-port", str(links.port), "--fetch-timeout", "3")
    running = Server(small_model, tmp_path_factory.mktemp("server_tmp"), max_upload_mb=1.0, extra=extra)
    yield running
    running.stop()
    assert not list(running.tmpdir.glob("medact-uploads-*")), "the upload root must be removed on shutdown"


def _post(server: Server, name: str, content: bytes, mime: str = "video/mp4") -> requests.Response:
    return requests.post(server.url + "/api/predict", files={"file": (name, content, mime)}, timeout=60)


def test_health_labels_and_schema(server: Server) -> None:
    health = requests.get(server.url + "/api/health", timeout=10).json()
    assert health["model_loaded"] is True and health["model"] == "c3d_gru" and health["max_upload_mb"] == 1.0
    assert requests.get(server.url + "/api/labels", timeout=10).json()["labels"] == list(CLASSES)
    schema = requests.get(server.url + "/api/openapi.json", timeout=10).json()
    assert set(schema["paths"]) == {"/api/predict", "/api/predict-url", "/api/health", "/api/labels"}
    assert {"400", "403", "413", "422", "504"} <= set(schema["paths"]["/api/predict-url"]["post"]["responses"])
    assert {"413", "422", "500", "503"} <= set(schema["paths"]["/api/predict"]["post"]["responses"])


def test_prediction_equals_the_cli_predictor(server: Server, small_model: Path, tiny_videos: Path) -> None:
    video = sorted(tiny_videos.glob("Wave/*.mp4"))[0]
    answer = _post(server, video.name, video.read_bytes())
    assert answer.status_code == 200, answer.text
    data = answer.json()
    expected = Predictor.load(small_model).predict(video, top_k=5)
    assert [r["label"] for r in data["top_k"]] == [r["label"] for r in expected["top_k"]]
    assert [r["probability"] for r in data["top_k"]] == pytest.approx([r["probability"] for r in expected["top_k"]], abs=1e-5)
    assert data["label"] == expected["label"] and len(data["frames"]) == 8 and data["frames"][0].startswith("data:image/jpeg;base64,")


def test_size_limit_answers_413_with_the_limit(server: Server) -> None:
    answer = _post(server, "big.mp4", b"\0" * (2 * 1024 * 1024))
    assert answer.status_code == 413 and answer.json()["limit_mb"] == 1.0 and "1 MB" in answer.json()["error"]


@pytest.mark.parametrize("content", [b"this is a text file, not a video\n" * 50, b"", bytes(range(256)) * 40])
def test_not_a_video_answers_422(server: Server, content: bytes) -> None:
    answer = _post(server, "holiday.mp4", content)
    assert answer.status_code == 422 and answer.json()["error"].startswith("Not a decodable video")
    assert str(server.tmpdir) not in answer.text  # server paths never leak


HOSTILE = [
    "../../evil.mp4",
    "/etc/passwd",
    "a\x00b.mp4",
    "x\r\nSet-Cookie: a=b.mp4",
    "A" * 5000 + ".mp4",
    "\u202egnp.exe.mp4",
    "..",
    "C:\\windows\\evil.mp4",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_names_never_reach_the_disk(server: Server, tiny_videos: Path, name: str) -> None:
    video = sorted(tiny_videos.glob("Jump/*.avi"))[0]
    answer = _post(server, name, video.read_bytes(), mime="text/plain")  # the type comes from the content
    assert answer.status_code == 200, answer.text
    for suspicious in ("evil.mp4", "passwd", "b.mp4"):
        assert not list(server.tmpdir.parent.rglob(suspicious)), suspicious
    assert not any(server.upload_root().iterdir())


def test_upload_root_is_empty_after_200_mixed_requests(server: Server, tiny_videos: Path) -> None:
    good = sorted(tiny_videos.glob("*/*"))[:2]
    payloads = [(p.name, p.read_bytes()) for p in good] + [
        ("bad.mp4", b"garbage" * 100),
        ("empty.avi", b""),
        ("x.mp4", b"\x00\x00\x00\x18ftypmp42"),
    ]

    def send(i: int) -> int:
        name, content = payloads[i % len(payloads)]
        return _post(server, name, content).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(send, range(200)))
    assert sorted(set(codes)) == [200, 422] and codes.count(200) == 80
    assert not any(server.upload_root().iterdir())


def test_no_model_answers_503(tmp_path: Path, tiny_videos: Path) -> None:
    running = Server(None, tmp_path)
    try:
        video = sorted(tiny_videos.glob("Jump/*"))[0]
        answer = _post(running, video.name, video.read_bytes())
        assert answer.status_code == 503 and "No model loaded" in answer.json()["error"]
        assert requests.get(running.url + "/api/labels", timeout=10).status_code == 503
        assert requests.get(running.url + "/api/health", timeout=10).json()["model_loaded"] is False
    finally:
        running.stop()


def test_internal_error_answers_500_with_an_id_and_no_details(
    small_model: Path, tiny_videos: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import action.web.server

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(action.web.server, "analyse", broken)  # a bug inside prediction
    client = action.web.server.create_app(small_model).test_client()
    video = sorted(tiny_videos.glob("Jump/*"))[0]
    answer = client.post("/api/predict", data={"file": (video.open("rb"), "v.avi")}, content_type="multipart/form-data")
    assert answer.status_code == 500 and len(answer.json["error_id"]) == 12
    assert "secret" not in answer.get_data(as_text=True)
    assert answer.json["error_id"] in caplog.text and "secret internal detail" in caplog.text


def test_a_top_k_that_is_not_a_number_answers_400(server: Server, tiny_videos: Path) -> None:
    video = sorted(tiny_videos.glob("Wave/*.mp4"))[0]
    answer = requests.post(
        server.url + "/api/predict", files={"file": (video.name, video.read_bytes(), "video/mp4")}, data={"top_k": "abc"}, timeout=60
    )
    assert answer.status_code == 400 and "top_k" in answer.json()["error"] and "'abc'" in answer.json()["error"]
    assert not any(server.upload_root().iterdir())


def test_an_upload_is_opened_twice_in_all_probe_then_one_decode(small_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Top-k, thumbnails and the timeline of a long video come from one header read and one decode.

    One decode per request also makes the server's decode budget (``max_decode_seconds``) a budget
    per request rather than per read.
    """
    import av
    import numpy as np

    import action.web.server
    from action.video.synthetic import encode_video

    frames = np.random.default_rng(0).integers(0, 255, (60, 48, 64, 3), dtype=np.uint8)
    video = encode_video(frames, tmp_path / "long.mp4", fps=10)  # 6 s: a timeline with 1 s windows
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *args, **kwargs: opened.append(args[0]) or real_open(*args, **kwargs))
    client = action.web.server.create_app(small_model, window=1.0).test_client()
    answer = client.post("/api/predict", data={"file": (video.open("rb"), "long.mp4")}, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert len(opened) == 2, opened
    data = answer.json
    predictor = Predictor.load(small_model)
    assert [r["label"] for r in data["top_k"]] == [r["label"] for r in predictor.predict(video)["top_k"]]
    expected = predictor.timeline(video, window=1.0)
    assert len(data["timeline"]) == len(expected) == 11
    assert [row["label"] for row in data["timeline"]] == [row["label"] for row in expected]
    assert [row["confidence"] for row in data["timeline"]] == pytest.approx([row["confidence"] for row in expected], abs=1e-5)
    assert len(data["frames"]) == 8


def test_a_link_is_answered_exactly_like_an_upload(server: Server, small_model: Path, tiny_videos: Path, links) -> None:
    video = sorted(tiny_videos.glob("Wave/*.mp4"))[0]
    answer = requests.post(server.url + "/api/predict-url", json={"url": links.url + "/redirect-good", "top_k": 3}, timeout=60)
    assert answer.status_code == 200, answer.text
    uploaded = _post(server, video.name, video.read_bytes()).json()
    data = answer.json()
    assert [r["label"] for r in data["top_k"]] == [r["label"] for r in uploaded["top_k"][:3]] and data["frames"] == uploaded["frames"]
    assert [r["probability"] for r in data["top_k"]] == pytest.approx([r["probability"] for r in uploaded["top_k"][:3]], abs=1e-6)
    assert not any(server.upload_root().iterdir())


@pytest.mark.parametrize(
    "link, status, message",
    [
        ("{links}/text.mp4", 422, "Not a decodable video: the linked file"),
        ("{links}/endless", 413, "larger than the limit of 1 MB"),
        ("{links}/liar", 413, "larger than the limit"),
        ("{links}/drip", 504, "longer than the limit of 3 s"),
        ("{links}/redirect-to?http://localhost:{port}/good.mp4", 403, "a loopback address"),
        ("ftp://example.org/v.mp4", 400, "Only http and https"),
        ("http://user:pw@127.0.0.1/", 400, "credentials"),
        ("http://127.0.0.1:25/good.mp4", 403, "port 25 are refused"),
        ("{links}/redirect-to?http://127.0.0.1:6379/", 403, "port 6379 are refused"),
    ],
)
def test_bad_links_answer_like_bad_uploads(server: Server, links, link: str, status: int, message: str) -> None:
    url = link.format(links=links.url, port=links.port)
    answer = requests.post(server.url + "/api/predict-url", json={"url": url}, timeout=60)
    assert answer.status_code == status and message in answer.json()["error"], answer.text
    assert not any(server.upload_root().iterdir())
    assert requests.post(server.url + "/api/predict-url", data="not json", timeout=10).status_code == 400


def test_parallel_link_fetches_share_the_upload_gate_and_cannot_fill_the_disk(small_model: Path, links, tmp_path: Path) -> None:
    """Five slow links at once against two transfer slots: at most two are ever stored, the rest get 503 at once."""
    import threading
    import time

    extra = (
        "--allow-url-host",
        "127.0.0.1",
        "--allow-url-port",
        str(links.port),
        "--fetch-timeout",
        "3",
        "--max-transfers",
        "2",
        "--transfer-wait",
        "0.5",
    )
    server = Server(small_model, tmp_path, max_upload_mb=1.0, extra=extra)
    try:
        root, most, done = server.upload_root(), 0, threading.Event()

        def watch() -> None:
            nonlocal most
            while not done.is_set():
                most = max(most, len(list(root.iterdir())))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            answers = list(
                pool.map(lambda _: requests.post(server.url + "/api/predict-url", json={"url": links.url + "/drip"}, timeout=60), range(5))
            )
        done.set()
        watcher.join()
        codes = sorted(a.status_code for a in answers)
        assert codes == [503, 503, 503, 504, 504], [a.text for a in answers]
        busy = next(a for a in answers if a.status_code == 503)
        assert "busy" in busy.json()["error"] and busy.headers["Retry-After"] == "30"
        assert 1 <= most <= 2 and not any(root.iterdir())
        assert _post(server, "v.mp4", b"not a video" * 10).status_code == 422  # the slots were given back
    finally:
        server.stop()
