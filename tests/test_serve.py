"""Local by default, a classroom on request: ``wslviz app`` / ``make app`` listen on loopback only, and
``wslviz serve`` enforces its rules (paths only inside the roots, no ``..``, symlinks followed, capped
per-session uploads that other sessions cannot open and that are deleted with their session, no code
from the browser, no paths outside the roots in messages).

The rules are checked three ways: :mod:`wslviz.ui.serve` directly, ``app.py`` under AppTest with the
serve environment set (each ``AppTest`` is its own session state), and real servers started on free
loopback ports (bound addresses read with psutil; one real browser session to see its upload folder go).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import ROOT, random_zoo
from fixtures_formats import write_cnnzoo, zip_folder
from streamlit.testing.v1 import AppTest

from wslviz import cli, ui
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.tasks import make_task
from wslviz.formats import save_zoo
from wslviz.ui import serve

TIMEOUT = 120
START_TIMEOUT = 120  # seconds for a server to listen (2 busy cores)
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"  # failure screenshots (not committed)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A shared root with zoos (one holding a link out), a private folder beside it with a zoo, and a
    symlink in the root pointing at the private zoo."""
    base = tmp_path_factory.mktemp("serve")
    root, private = base / "shared", base / "private"
    zoo = random_zoo(Architecture(mlp_spec([2, 8, 2])), make_task("moons"), n_models=3, epochs=(0, 1), seed=3)
    save_zoo(zoo, root / "zoo-in")
    save_zoo(random_zoo(Architecture(mlp_spec([2, 8, 2])), None, n_models=5, epochs=(0,), seed=4),
             private / "secret-zoo")  # 5 models: told apart from the shared zoos (3) by the summary
    (root / "link-out").symlink_to(private / "secret-zoo", target_is_directory=True)
    save_zoo(zoo, root / "zoo-with-link")
    (root / "zoo-with-link" / "notes.json").symlink_to(private / "secret-zoo" / "zoo.json")
    write_cnnzoo(base / "cnnzoo", n_models=2, steps=(0, 10))
    return {"base": base, "root": root, "private": private}


@pytest.fixture
def serving(world, monkeypatch) -> Path:
    """Serve mode for the code running in this process (what ``wslviz serve`` sets for Streamlit)."""
    monkeypatch.delenv(ui.ENV_ZOO, raising=False)
    monkeypatch.setenv(serve.ROOTS_ENV, str(world["root"]))
    monkeypatch.setenv(serve.UPLOAD_ENV, "1")
    return world["root"]




def refusal(text: str, root: Path) -> str:
    return f"{text!r} is not inside the folders this server shares ({root})"


# ------------------------------------------------------------------ the rules, directly
def test_local_mode_changes_nothing(world, monkeypatch):
    monkeypatch.delenv(serve.ROOTS_ENV, raising=False)
    secret = world["private"] / "secret-zoo"
    assert serve.serve_rules() is None and serve.allow_code()
    assert serve.check_zoo_path(secret) == secret
    assert serve.public_message(f"cannot read {secret}") == f"cannot read {secret}"


def test_a_path_outside_the_roots_is_refused_alike_whether_it_exists_or_not(world, serving):
    for path in (world["private"] / "secret-zoo", world["private"] / "no-such-zoo", Path("/etc")):
        with pytest.raises(serve.PathRefused) as e:
            serve.check_zoo_path(path)
        assert str(e.value) == refusal(str(path), serving)


def test_a_symlink_pointing_out_is_refused(world, serving):
    for text in (str(serving / "link-out"), "link-out"):
        with pytest.raises(serve.PathRefused) as e:
            serve.check_zoo_path(text)
        assert str(e.value) == refusal(text, serving) and str(world["private"]) not in str(e.value)
    # a zoo folder inside the root that holds a link to a file outside it
    with pytest.raises(serve.PathRefused, match="holds a link that points outside"):
        serve.check_zoo_path(serving / "zoo-with-link")


def test_dot_dot_is_refused_even_when_it_lands_inside(serving):
    for text in (f"{serving}/zoo-in/../zoo-in", "../private/secret-zoo", "zoo-in/.."):
        with pytest.raises(serve.PathRefused, match=r"'\.\.' is not allowed"):
            serve.check_zoo_path(text)


def test_paths_inside_the_roots_are_honoured(world, serving, tmp_path, monkeypatch):
    inside = (serving / "zoo-in").resolve()
    assert serve.check_zoo_path(serving / "zoo-in") == inside
    assert serve.check_zoo_path("zoo-in") == inside  # a name under a root
    assert serve.check_zoo_path(ui.SAMPLE_DIR / "moons-mlp", also=(ui.SAMPLE_DIR,)) == ui.SAMPLE_DIR / "moons-mlp"
    # several roots: a name is looked up under each
    other = tmp_path / "second-root"
    save_zoo(random_zoo(Architecture(mlp_spec([2, 4, 2])), None, n_models=1), other / "zoo-b")
    monkeypatch.setenv(serve.ROOTS_ENV, os.pathsep.join([str(serving), str(other)]))
    assert serve.check_zoo_path("zoo-b") == (other / "zoo-b").resolve()


def test_code_factories_are_never_honoured_from_the_browser(serving, monkeypatch):
    assert not serve.allow_code()
    with pytest.raises(serve.CodeRefused, match="cannot be loaded from the browser"):
        serve.require_code_allowed("the architecture factory model.py")
    monkeypatch.delenv(serve.ROOTS_ENV)
    assert serve.allow_code()
    serve.require_code_allowed()


def test_messages_hide_paths_outside_the_roots(world, serving):
    secret = world["private"] / "secret-zoo" / "zoo.json"
    text = f"{secret}: bad JSON; compare {serving / 'zoo-in' / 'zoo.json'} (see /usr/lib/python3/x.py)"
    shown = serve.public_message(text)
    assert str(world["private"]) not in shown and "/usr/lib" not in shown
    assert shown == (f"{serve.HIDDEN}: bad JSON; compare {serving / 'zoo-in' / 'zoo.json'} (see {serve.HIDDEN})")


def test_upload_limits_follow_the_server(serving, monkeypatch):
    assert serve.upload_limits(200 * 2**20, 512 * 2**20) == (2**20, serve.UNPACK_FACTOR * 2**20)
    monkeypatch.delenv(serve.ROOTS_ENV)
    assert serve.upload_limits(200 * 2**20, 512 * 2**20) == (200 * 2**20, 512 * 2**20)


# ------------------------------------------------------------------ the app under AppTest, serve env set
def app(**query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def type_folder(at: AppTest, text: str) -> AppTest:
    at.sidebar.radio(key="zoo_source").set_value("Folder path").run()
    return at.sidebar.text_input(key="zoo_folder").input(text).run()


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def models_shown(at: AppTest) -> list[str]:
    """The "models" figure of the home page's summary card (empty when no zoo opened)."""
    return [m.value for m in at.metric if m.label == "models"]


def assert_refused(at: AppTest, private: Path, typed: str = "") -> None:
    """Nothing of the private zoo was opened, the refusal is shown, and no message names a private
    path (other than what the user typed, which may be echoed)."""
    assert not at.exception
    assert "5" not in models_shown(at)
    shown = " ".join(errors(at))
    assert "not inside the folders this server shares" in shown or "'..' is not allowed" in shown, shown
    assert str(private) not in shown.replace(repr(typed), ""), shown


def test_the_sidebar_opens_zoos_inside_the_roots_only(world, serving):
    at = app()
    assert not at.exception
    assert Path(at.session_state[ui.ZOO_KEY]).is_relative_to(ui.SAMPLE_DIR)  # the bundled zoos stay available
    for text in (str(world["private"] / "secret-zoo"), str(serving / "link-out"), "../private/secret-zoo"):
        assert_refused(type_folder(at, text), world["private"], text)
    type_folder(at, "zoo-in")
    assert not at.exception and not errors(at)
    assert at.session_state[ui.ZOO_KEY] == "zoo-in" and models_shown(at) == ["3"]


def test_a_link_to_a_zoo_outside_the_roots_does_not_open_it(world, serving):
    for ref in (str(world["private"] / "secret-zoo"), str(serving / "link-out"), "link-out"):
        assert_refused(app(zoo=ref), world["private"], ref)


def test_an_upload_over_the_cap_is_refused(serving):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("z/weights.npy", rng.bytes(int(1.5 * 2**20)))  # incompressible, over the 1 MB cap
    at = app()
    at.sidebar.radio(key="zoo_source").set_value("Upload").run()
    at.file_uploader(key="zoo_upload").set_value(("big.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception
    assert any("big.zip is 1.5 MB; the limit is 1 MB" in e for e in errors(at))
    assert Path(at.session_state[ui.ZOO_KEY]).is_relative_to(ui.SAMPLE_DIR)
    folder = Path(at.session_state[serve.SESSION_FOLDER_KEY])
    assert folder.is_dir() and not any(folder.iterdir())  # nothing kept of the refused upload


def test_a_second_session_cannot_open_the_first_ones_upload(world, serving):
    data = zip_folder(world["base"] / "cnnzoo", "mnist_cnns")
    first = app()
    first.sidebar.radio(key="zoo_source").set_value("Upload").run()
    first.file_uploader(key="zoo_upload").set_value(("mnist_cnns.zip", data, "application/zip")).run()
    assert not first.exception and not errors(first)
    uploaded = first.session_state[ui.ZOO_KEY]
    folder = Path(first.session_state[serve.SESSION_FOLDER_KEY])
    assert Path(uploaded).is_relative_to(folder) and "### mnist_cnns" in [m.value for m in first.markdown]
    first.run()  # the owner keeps it
    assert first.session_state[ui.ZOO_KEY] == uploaded and not errors(first)

    for second in (app(zoo=uploaded), type_folder(app(), uploaded)):  # by a shared link, or typed
        assert not second.exception and "### mnist_cnns" not in [m.value for m in second.markdown]
        assert any("not inside the folders this server shares" in e for e in errors(second))
        assert str(folder) not in " ".join(errors(second)).replace(repr(uploaded), "")
        assert serve.SESSION_FOLDER_KEY not in second.session_state  # it never got a folder of its own


# ------------------------------------------------------------------ the command line
def test_serve_passes_the_rules_to_streamlit(world, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, cwd, env: calls.append((cmd, env)) or 0)
    root = world["root"]
    assert cli.main(["serve", "--zoo-root", str(root), "--zoo-root", str(world["base"] / "cnnzoo"),
                     "--max-upload-mb", "20", "--port", "8765"]) == 0
    cmd, env = calls[-1]
    opts = dict(zip(cmd[5::2], cmd[6::2], strict=False))
    assert opts["--server.address"] == "127.0.0.1" and opts["--server.port"] == "8765"
    assert opts["--server.maxUploadSize"] == "20" and opts["--client.showErrorDetails"] == "none"
    assert env[serve.ROOTS_ENV] == os.pathsep.join([str(root.resolve()), str((world["base"] / "cnnzoo").resolve())])
    assert env[serve.UPLOAD_ENV] == "20"
    assert cli.main(["serve", "--zoo-root", str(root), str(root / "zoo-in")]) == 0
    assert calls[-1][1][ui.ENV_ZOO] == str((root / "zoo-in").resolve())
    assert cli.main(["serve", "--zoo-root", str(root / "nope")]) == 1
    assert cli.main(["serve", "--zoo-root", str(root), str(world["private"] / "secret-zoo")]) == 1
    assert cli.main(["app", "--", "--server.address", "0.0.0.0"]) == 1  # sharing is `wslviz serve`'s job
    assert len(calls) == 2


# ------------------------------------------------------------------ real servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process ``pid`` and its children."""
    proc = psutil.Process(pid)
    pids = {proc.pid} | {p.pid for p in proc.children(recursive=True)}
    return {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("inet")
            if c.pid in pids and c.status == psutil.CONN_LISTEN}


def _start(cmd: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group and wait until it listens on ``port``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not any(p == port for _, p in _listening(proc.pid)):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"{cmd[:4]} did not listen on {port}:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    """Stop the process group we started (its id is the leader's pid)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def _assert_loopback_only(proc: subprocess.Popen, port: int) -> None:
    bound = _listening(proc.pid)
    assert bound and all(ip in ("127.0.0.1", "::1") for ip, _ in bound), bound
    assert (("127.0.0.1", port)) in bound


@pytest.mark.slow
@pytest.mark.parametrize("how", ["wslviz app", "make app"])
def test_the_local_app_listens_on_loopback_only(how, tmp_path):
    port = _free_port()
    if how == "make app":  # -o: the recipe as it is, without re-checking the set-up stamps
        cmd = ["make", "--no-print-directory", "-o", ".venv/.stamp-app", "app", f"PORT={port}"]
    else:
        cmd = [sys.executable, "-m", "wslviz.cli", "app", "--", "--server.headless", "true",
               "--server.port", str(port)]
    proc = _start(cmd, port, tmp_path / "server.log")
    try:
        _assert_loopback_only(proc, port)
    finally:
        _stop(proc)


@pytest.mark.slow
@pytest.mark.browser
def test_a_served_upload_folder_goes_with_its_session(world, tmp_path):
    """``wslviz serve`` listens on loopback by default; a browser session's upload is unpacked under its
    own temporary folder, which is deleted once the session disconnects."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    port, temp = _free_port(), tmp_path / "tmp"
    temp.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != ui.ENV_ZOO}, "TMPDIR": str(temp)}
    proc = _start([sys.executable, "-m", "wslviz.cli", "serve", "--zoo-root", str(world["root"]), "--port",
                   str(port)], port, tmp_path / "server.log", env)
    archive = tmp_path / "mnist_cnns.zip"
    archive.write_bytes(zip_folder(world["base"] / "cnnzoo", "mnist_cnns"))
    try:
        _assert_loopback_only(proc, port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.status == 200
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--disable-sync", "--no-first-run"])
            try:
                context = browser.new_context()
                page = context.new_page()
                page.set_default_timeout(90_000)
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_text("Upload", exact=True).click()
                page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(archive))
                try:
                    page.get_by_role("heading", name="mnist_cnns").wait_for()  # the home page's summary card
                except BaseException:
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(ARTIFACTS / "serve-upload-failure.png"))
                    raise
                folders = list(temp.glob("wslviz-session-*"))
                assert len(folders) == 1 and list(folders[0].glob("upload-*/**/zoo.json"))
                context.close()  # the session disconnects
                deadline = time.monotonic() + 30
                while folders[0].exists() and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert not folders[0].exists(), "the session's upload folder outlived the session"
            finally:
                browser.close()
    finally:
        _stop(proc)
