"""The studio as users meet it: `o1 serve` on a free port with a tiny trained workdir, called
through gradio_client, driven in headless Chromium, fed bad input and path traversal, and
loaded by 16 clients at once; a stream played in the page while it is made, and steered."""

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from o1 import media

QUEUE_SIZE = 4  # smaller than the 16 clients of the load test
CLEANUP_AGE = 6  # seconds
STARTUP_TIMEOUT = 300  # seconds for model load and warm-up on a busy 2-core machine
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = pathlib.Path(os.environ.get("O1_TEST_ARTIFACTS",
                                        pathlib.Path(__file__).parents[2] / "artifacts"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, workdir: pathlib.Path, out_dir: pathlib.Path):
        self.port, self.out_dir, self.lines = _free_port(), out_dir, []
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "o1.cli", "serve", "--workdir", str(workdir),
             "--port", str(self.port), "--out-dir", str(out_dir), "--queue-size",
             str(QUEUE_SIZE), "--cleanup-age", str(CLEANUP_AGE), "--max-upload", "1mb",
             "--max-storage", "4mb", "--max-seconds", "8"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(STARTUP_TIMEOUT) or self.proc.poll() is not None:
            self.stop()
            pytest.fail("o1 serve did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("o1 studio: serving"):
                self.ready.set()

    def client(self, downloads: pathlib.Path) -> Client:
        return Client(self.url, verbose=False, download_files=str(downloads))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@pytest.fixture(scope="module")
def server(trained_workdir, tmp_path_factory):
    served = Server(trained_workdir, tmp_path_factory.mktemp("studio"))
    yield served
    assert served.stop() == 0, "".join(served.lines)


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return server.client(tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def example(server):
    return server.out_dir / "examples"


def _check_clip(path, seconds: float, fps: int = 16) -> None:
    info = media.probe(path)
    assert info["has_video"] and info["has_audio"], info
    clip = media.read_media(path)
    assert len(clip.frames) == round(seconds * fps)
    assert abs(len(clip.audio) / clip.sample_rate - seconds) <= 1 / fps


def test_startup_names_the_checkpoint_and_binds_loopback_only(server):
    log = "".join(server.lines)
    assert "warm-up done" in log and "(checkpoint 2)" in log and server.url in log
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outward interface
            outward = s.getsockname()[0]
        except OSError:  # no route off this machine: nothing else could reach the port
            outward = "127.0.0.1"
    if not outward.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((outward, server.port), timeout=2).close()


def test_every_endpoint_through_gradio_client(client, example, server):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/generate", "/caption", "/dub", "/visualize", "/animate",
                              "/extend", "/stream", "/steer", "/stop"}

    video, image, sync = client.predict("a red circle bounces", 2.0, api_name="/generate")
    _check_clip(video, 2.0)
    assert pathlib.Path(image).stat().st_size > 0 and "visual bounces" in sync

    caption = client.predict(handle_file(example / "0.mp4"), api_name="/caption")
    assert isinstance(caption, str) and caption.strip()

    video, _, _ = client.predict(handle_file(example / "0_silent.mp4"), api_name="/dub")
    _check_clip(video, media.read_media(example / "0_silent.mp4", require_audio=False).seconds)

    sound = media.read_media(example / "0.mp4")
    video, _, _ = client.predict(handle_file(example / "0.wav"), api_name="/visualize")
    _check_clip(video, sound.seconds)
    # The sound is the clip's sound (through 16-bit wav and AAC): its bursts are where they were.
    envelopes = [np.abs(a[:len(sound.audio)]).reshape(len(sound.frames), -1).max(1)
                 for a in (sound.audio, media.read_media(video).audio)]
    assert np.corrcoef(*envelopes)[0, 1] > 0.95

    video, _, _ = client.predict(handle_file(example / "0.png"), "a blue square", 1.5,
                                 api_name="/animate")
    _check_clip(video, 1.5)

    video, _, _ = client.predict(handle_file(example / "0.mp4"), 1.0, api_name="/extend")
    _check_clip(video, media.read_media(example / "0.mp4").seconds + 1.0)


def test_progress_advances_per_denoising_step(client):
    job = client.submit("a green disc", 3.0, 6, api_name="/generate")
    seen = set()
    while not job.done():
        for unit in job.status().progress_data or ():
            seen.add((unit.index, unit.length))
        time.sleep(0.005)
    job.result()
    lengths = {length for _, length in seen}
    assert len(lengths) == 1 and lengths.pop() % 6 == 0  # 6 steps in each window
    assert len(seen) >= 2  # the bar moved while sampling


def _browser():
    """playwright's sync API, or a skip (a failure in CI) when it or Chromium is missing."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        if os.environ.get("O1_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    return playwright


def _launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--enable-blink-features=AudioVideoTracks",
        "--autoplay-policy=no-user-gesture-required"])


def _need_ffmpeg() -> None:
    """A skip (a failure in CI) when the stream's muxing programs are missing."""
    missing = [name for name in ("ffmpeg", "ffprobe") if shutil.which(name) is None]
    if missing:
        message = f"{' and '.join(missing)} missing (apt-get install ffmpeg)"
        if os.environ.get("O1_REQUIRE_FFMPEG"):
            pytest.fail(message)
        pytest.skip(message)


def test_browser_generates_a_playable_clip_with_sound(server):
    playwright = _browser()
    with playwright.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server.url)
            assert "checkpoint 2" in page.locator("#served").inner_text()
            page.locator("#prompt textarea").fill("a fast red circle bounces")
            page.locator("#generate-btn").click()
            page.wait_for_function(
                "() => { const v = document.querySelector('#generate-video video');"
                " return v && v.readyState >= 1 && v.duration > 0; }", timeout=120_000)
            duration, audio, video = page.evaluate(
                "() => { const v = document.querySelector('#generate-video video');"
                " return [v.duration, v.audioTracks.length, v.videoTracks.length]; }")
            page.wait_for_function(  # the first frame and the sync picture are painted
                "() => { const v = document.querySelector('#generate-video video');"
                " const img = document.querySelector('#generate-sync img');"
                " return v.readyState >= 2 && img && img.complete && img.naturalWidth > 0"
                " && !document.querySelector('.generating'); }", timeout=30_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTIFACTS / "studio_generate.png", full_page=True)
        finally:
            browser.close()
    assert abs(duration - 33 / 16) < 0.05 and audio == 1 and video == 1


def test_bad_inputs_are_refused_and_the_server_keeps_serving(client, server, example,
                                                             tmp_path):
    truncated = tmp_path / "truncated.mp4"
    data = (example / "0.mp4").read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    huge = tmp_path / "huge.mp4"
    huge.write_bytes(os.urandom(2 * 1024 * 1024))
    long_video = tmp_path / "long.mp4"  # longer than the server's --max-seconds 8
    media.write_mp4(long_video, np.zeros((12 * 16, 32, 32, 3), np.uint8), 16)
    not_image = tmp_path / "frame.png"
    not_image.write_text("not a picture")
    quiet = tmp_path / "quiet.wav"
    with wave.open(str(quiet), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(bytes(2 * 16000))
    cases = [
        (("", 2.0), "/generate", "Prompt is empty"),
        (("一个红色的圆", 2.0), "/generate", "Prompt has 6 words this model never read.*'一'"),
        (("a red circle", 0.0), "/generate", r"Seconds: Value 0\.0 is less than minimum"),
        (("a red circle", 2.0, 0), "/generate", "Denoising steps: Value 0 is less than"),
        (("word " * 400, 2.0), "/generate", "2000 characters"),
        (("a fast red circle bounces " * 8, 2.0), "/generate", "tokens"),
        (("a red circle", 999.0), "/generate", "999"),
        (("a red circle", 2.0, 10**6), "/generate", "1000000"),
        (("a red circle", 2.0, 12, 3.0, 3.0, -5), "/generate", "-5"),
        ((handle_file(truncated),), "/caption", "truncated"),
        ((handle_file(text),), "/caption", "not a media file"),
        ((handle_file(example / "0.png"),), "/caption", "is an image, not a video"),
        ((handle_file(example / "0.png"),), "/dub", "is an image, not a video"),
        ((handle_file(example / "0.mp4"), 30.0), "/extend", "30"),
        ((handle_file(long_video),), "/dub", "12.0 s long"),
        ((handle_file(not_image), "a red circle"), "/animate", "frame.png"),
        ((handle_file(example / "0.png"),), "/visualize", "Sound: 0.png has no audio track"),
        ((handle_file(example / "0_silent.mp4"),), "/visualize",
         "Sound: 0_silent.mp4 has no audio track"),
        ((handle_file(quiet),), "/visualize", "Sound: quiet.wav is silent"),
        ((handle_file(text),), "/visualize", "Sound: notes.mp4"),
        ((handle_file(example / "0.wav"), "a zigzag"), "/visualize", "Prompt has 1 word"),
    ]
    for args, api, message in cases:
        with pytest.raises(AppError, match=message) as caught:
            client.predict(*args, api_name=api)
        assert str(server.out_dir) not in str(caught.value) and "/tmp" not in str(caught.value)
    with pytest.raises(Exception, match="413|too large|exceeds"):
        client.predict(handle_file(huge), api_name="/caption")
    assert server.proc.poll() is None
    assert client.predict(handle_file(example / "0.mp4"), api_name="/caption").strip()


def test_the_same_request_gives_the_same_bytes_after_other_requests(client, example):
    request = ("a red circle bounces", 2.0, 3, 3.0, 3.0, 7)
    sound = (handle_file(example / "0.wav"), "a red circle", 3, 3.0, 3.0, 7)
    first = pathlib.Path(client.predict(*request, api_name="/generate")[0]).read_bytes()
    first_made = pathlib.Path(client.predict(*sound, api_name="/visualize")[0]).read_bytes()
    client.predict(handle_file(example / "0_silent.mp4"), api_name="/dub")
    client.predict("a blue square", 3.0, 2, 2.0, 1.0, 8, api_name="/generate")
    client.predict(handle_file(example / "0.mp4"), api_name="/caption")
    again = pathlib.Path(client.predict(*request, api_name="/generate")[0]).read_bytes()
    assert again == first
    again = pathlib.Path(client.predict(*sound, api_name="/visualize")[0]).read_bytes()
    assert again == first_made


def test_only_the_studios_own_host_names_are_answered(server):
    for host, status in (("evil.example", 400), (f"evil.example:{server.port}", 400),
                         (f"localhost:{server.port}", 200), (f"127.0.0.1:{server.port}", 200)):
        request = urllib.request.Request(server.url, headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                got = r.status
        except urllib.error.HTTPError as e:
            got = e.code
        assert got == status, host


def test_path_traversal_is_refused(server, example):
    for path in ["file=../../etc/passwd", "file=..%2F..%2Fetc%2Fpasswd",
                 "file=%2e%2e%2f%2e%2e%2fetc%2fpasswd", "file=%252e%252e%252fetc%252fpasswd",
                 "file=/etc/passwd", "gradio_api/file=../../etc/passwd",
                 "gradio_api/file=..%2F..%2Fetc%2Fpasswd",
                 "gradio_api/file=%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                 "gradio_api/file=/etc/passwd",
                 f"gradio_api/file={server.out_dir}/../../../../etc/passwd",
                 f"gradio_api/file={server.out_dir}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 f"gradio_api/file={pathlib.Path(__file__).resolve()}",
                 "static/../../../../etc/passwd", "assets/..%2f..%2f..%2fetc%2fpasswd"]:
        request = urllib.request.Request(server.url + path)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                body, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        assert status in (400, 403, 404), (path, status)
        assert b"root:" not in body and b"import" not in body, path
    with urllib.request.urlopen(f"{server.url}gradio_api/file={example / '0.png'}",
                                timeout=10) as r:
        assert r.status == 200 and r.read(4) == b"\x89PNG"  # the served folder is served


def test_sixteen_clients_complete_or_get_busy_and_none_hangs(server, tmp_path):
    clients = [server.client(tmp_path / str(i)) for i in range(16)]
    barrier, outcomes = threading.Barrier(16), [None] * 16

    def run(i: int) -> None:
        barrier.wait()
        start = time.perf_counter()
        try:
            video, _, _ = clients[i].submit("a red circle bounces", 4.0, 20,
                                            api_name="/generate").result(timeout=240)
            outcomes[i] = ("done", time.perf_counter() - start, video)
        except Exception as e:  # noqa: BLE001 (each kind is classified below)
            outcomes[i] = ("busy" if "Queue is full" in str(e) else repr(e),
                           time.perf_counter() - start, None)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(not t.is_alive() for t in threads), "a client hung"
    kinds = [o[0] for o in outcomes]
    print(f"16 clients, queue {QUEUE_SIZE}: {kinds.count('done')} done, {kinds.count('busy')} "
          f"busy; seconds per client: {sorted(round(o[1], 2) for o in outcomes)}")
    assert set(kinds) <= {"done", "busy"}, kinds
    assert kinds.count("done") >= 1 and kinds.count("busy") >= 16 - 1 - QUEUE_SIZE - 2, kinds
    assert max(o[1] for o in outcomes if o[0] == "busy") < 30  # refused at once, not queued
    for kind, _, video in outcomes:
        if kind == "done":
            _check_clip(video, 4.0)
    assert server.proc.poll() is None
    assert clients[0].predict("a blue square", 1.0, 2, api_name="/generate")[0]


def test_outputs_are_deleted_after_the_cleanup_age(client, server):
    before = set((server.out_dir / "outputs").glob("*.mp4"))
    client.predict("a red circle bounces", 1.0, 2, api_name="/generate")
    made = set((server.out_dir / "outputs").glob("*.mp4")) - before
    assert len(made) == 1
    deadline = time.time() + 4 * CLEANUP_AGE
    while time.time() < deadline and any(p.exists() for p in made):
        time.sleep(0.5)
    assert not any(p.exists() for p in made)
    for name in ("0.mp4", "0.wav"):  # examples are kept (Gradio's cache cleanup spares them)
        assert (server.out_dir / "examples" / name).exists(), name


def test_serve_refuses_a_workdir_without_a_model_or_a_busy_port(tmp_path, capsys, server):
    from o1 import cli

    assert cli.main(["serve", "--workdir", str(tmp_path), "--port", str(_free_port())]) == 2
    assert "no trained model" in capsys.readouterr().err
    assert not (tmp_path / "samples").exists()  # nothing left behind
    assert cli.main(["serve", "--workdir", str(tmp_path), "--port", str(server.port)]) == 2
    assert f"cannot listen on 127.0.0.1:{server.port}" in capsys.readouterr().err


def test_uploads_stop_when_the_served_folder_is_full(server):
    import httpx

    chunk = os.urandom(900 * 1024)  # under --max-upload 1mb; --max-storage is 4mb
    statuses = []
    for i in range(8):
        r = httpx.post(f"{server.url}gradio_api/upload",
                       files={"files": (f"u{i}.bin", chunk)}, timeout=30)
        statuses.append(r.status_code)
        if r.status_code == 507:
            assert "upload space is full" in r.text
            break
    assert statuses[0] == 200 and statuses[-1] == 507, statuses
    used = sum(f.stat().st_size for f in server.out_dir.rglob("*") if f.is_file())
    assert used <= 4 * 1024**2


def _stream_ends(server, before: int, timeout: float = 60) -> float:
    """The unix time at which the studio handed out the last segment of the first stream to
    end after `before` of them had (its log line)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ends = [m for line in list(server.lines)
                if (m := re.search(r"o1 studio: stream .* \(unix ([0-9.]+)\)", line))]
        if len(ends) > before:
            return float(ends[before].group(1))
        time.sleep(0.1)
    pytest.fail("no stream ended:\n" + "".join(server.lines))


def _streams_ended(server) -> int:
    return sum("o1 studio: stream " in line for line in list(server.lines))


def test_stream_endpoint_yields_segments_with_sound(client):
    _need_ffmpeg()
    start = time.perf_counter()
    outputs = list(client.submit("a red circle bounces", 4.0, api_name="/stream"))
    assert len(outputs) >= 3, outputs
    frames = 0
    for playlist, sound, segment, _ in outputs:
        clip = media.read_media(segment)
        assert media.probe(segment)["has_audio"] and len(clip.frames) >= 15
        assert abs(len(clip.audio) / clip.sample_rate - len(clip.frames) / 16) <= 1 / 16
        assert pathlib.Path(sound).read_bytes()[:4] == b"\x89PNG"
        assert pathlib.Path(playlist).read_text().startswith("#EXTM3U")
        frames += len(clip.frames)
    assert frames == 4 * 16
    assert outputs[-1][3].startswith("**4.0 s** of 4 s made")
    print(f"4 s stream through gradio_client: {len(outputs)} segments in "
          f"{time.perf_counter() - start:.1f} s")


def test_stream_is_steered_and_stopped_over_http(client):
    _need_ffmpeg()
    job = client.submit("a red circle bounces", 8.0, api_name="/stream")
    statuses = []
    for _, _, _, status in job:
        statuses.append(status)
        if len(statuses) == 1:
            with pytest.raises(AppError, match="Prompt has 1 word this model never read"):
                client.predict("a zigzag circle", api_name="/steer")
            client.predict("a blue square", api_name="/steer")
        if status.endswith("prompt: a blue square"):
            client.predict(api_name="/stop")
            break
    rest = [status for _, _, _, status in job]  # what was made before the stop took hold
    made = [float(s.split("**")[1].split()[0]) for s in statuses + rest]
    assert statuses[0].endswith("prompt: a red circle bounces")
    assert statuses[-1].endswith("prompt: a blue square"), statuses
    assert made[-1] < 8.0 and made == sorted(made), made


def test_stream_tab_says_when_ffmpeg_is_missing(monkeypatch, tmp_path):
    from o1.serve.studio import stream_unavailable

    assert (stream_unavailable() is None) == bool(shutil.which("ffmpeg") and
                                                  shutil.which("ffprobe"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "ffmpeg and ffprobe are not installed" in stream_unavailable()


def test_browser_plays_a_stream_while_it_is_made_and_steers_it(server):
    playwright = _browser()
    _need_ffmpeg()
    video = "document.querySelector('#stream-video video')"
    with playwright.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server.url)
            page.get_by_role("tab", name="Stream").click()
            prompt = page.locator("#stream-prompt textarea, #stream-prompt input").first
            prompt.fill("a red circle bounces")
            page.evaluate("""() => {  // the wall-clock time of every 'playing' of the player
                window.playing = [];
                const hook = () => document.querySelectorAll('#stream-video video')
                    .forEach(v => { if (!v.o1) { v.o1 = true; v.addEventListener(
                        'playing', () => window.playing.push(Date.now())); } });
                new MutationObserver(hook).observe(document.body,
                                                   {childList: true, subtree: true});
                hook(); }""")
            before = _streams_ended(server)
            clicked = page.evaluate("() => Date.now()") / 1000
            page.locator("#stream-btn").click()
            page.wait_for_function("() => window.playing.length > 0", timeout=30_000)
            page.wait_for_function(f"() => {video}.webkitAudioDecodedByteCount > 0",
                                   timeout=10_000)
            audio = page.evaluate(f"() => {video}.audioTracks.length")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTIFACTS / "stream_mid.png", full_page=True)
            prompt.fill("a zigzag circle")  # refused; the stream goes on
            prompt.press("Enter")
            page.get_by_text("Prompt has 1 word this model never read").first.wait_for(
                timeout=10_000)
            prompt.fill("a blue square")
            prompt.press("Enter")
            page.wait_for_function(
                "() => document.querySelector('#stream-status').innerText"
                ".endsWith('prompt: a blue square')", timeout=30_000)
            sound = "document.querySelector('#stream-sound img')"
            drawn = page.evaluate(f"() => {sound}.src")  # may lag the status by a segment
            page.wait_for_function(f"() => {sound}.src !== {drawn!r} && {sound}.complete",
                                   timeout=30_000)
            page.screenshot(path=ARTIFACTS / "stream_switched.png", full_page=True)
            last = _stream_ends(server, before)
            first_playing = page.evaluate("() => window.playing[0]") / 1000
            playing = page.evaluate(f"() => {video}.currentTime")
        finally:
            browser.close()
    print(f"the page played the stream {first_playing - clicked:.2f} s after Start, "
          f"{last - first_playing:.2f} s before the studio handed out its last segment")
    assert first_playing < last and audio == 1 and playing > 0
