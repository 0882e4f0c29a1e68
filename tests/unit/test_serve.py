"""``haneul serve``: what it builds from storage.conf, and how it fails (exit 2, one line).

``prepare_process`` (eventlet's monkey patching) is stubbed out here, so the test process
stays as it is; the real thing runs in tests/functional.
"""

import os
import socket
import subprocess
import sys

import pytest

from cli import serve
from common.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "etc", "storage.conf")


@pytest.fixture(autouse=True)
def no_monkey_patching(monkeypatch):
    monkeypatch.setattr("common.wsgi.prepare_process", lambda: None)


@pytest.fixture
def confs(tmp_path, monkeypatch):
    """Write a haneul.conf and a storage.conf; returns a function writing the latter."""
    haneul = tmp_path / "haneul.conf"
    haneul.write_text("[hash]\nprefix = p\nsuffix = s\n")
    monkeypatch.setenv("HANEUL_CONF", str(haneul))
    (tmp_path / "srv").mkdir()

    def write(text="", defaults=""):
        path = tmp_path / "storage.conf"
        path.write_text(f"[DEFAULT]\ndevices = {tmp_path / 'srv'}\n{defaults}\n{text}")
        return str(path)

    return write


def test_storage_runs_three_listeners_on_the_default_ports(confs):
    plan = serve.load_plan(confs(), "storage")
    assert [(item.name, item.port) for item in plan.listeners] == [
        ("object", 6200),
        ("container", 6201),
        ("account", 6202),
    ]
    apps = [item.make_app() for item in plan.listeners]
    assert [type(app).__name__ for app in apps] == ["ObjectApp", "ContainerApp", "AccountApp"]


def test_each_app_reads_default_overlaid_with_its_section(confs, tmp_path):
    path = confs(
        "[object]\nport = 7000\ndisk_chunk_size = 4096\n[container]\nbind_ip = 127.0.0.2\n",
        defaults="mount_check = true\n",
    )
    plan = serve.load_plan(path, "storage")
    obj, container, _ = plan.listeners
    assert obj.port == 7000 and container.bind_ip == "127.0.0.2"
    app = obj.make_app()
    assert app.disk_chunk_size == 4096 and app.mount_check is True
    assert app.devices == str(tmp_path / "srv")


def test_single_port_serves_a_router(confs):
    plan = serve.load_plan(confs("[storage]\nsingle_port = true\nport = 7100\n"), "storage")
    (listener,) = plan.listeners
    assert (listener.name, listener.port) == ("storage", 7100)
    router = listener.make_app()
    assert set(router.apps) == {"object", "container", "account"}


def test_one_app_alone_uses_its_own_section(confs):
    plan = serve.load_plan(confs("[account]\nport = 7200\nworkers = 3\n"), "account")
    (listener,) = plan.listeners
    assert (listener.name, listener.port, plan.options.workers) == ("account", 7200, 3)


def test_bind_ip_of_storage_applies_unless_an_app_section_names_its_own(confs):
    path = confs(
        "[storage]\nbind_ip = 127.0.0.3\n[account]\nbind_ip = 127.0.0.4\n",
        defaults="bind_ip = 127.0.0.2\n",
    )
    plan = serve.load_plan(path, "storage")
    assert [item.bind_ip for item in plan.listeners] == ["127.0.0.3", "127.0.0.3", "127.0.0.4"]


def test_server_options_come_from_default_and_storage(confs):
    path = confs("[storage]\nworkers = 5\n", defaults="workers = 2\nlog_level = debug\n")
    plan = serve.load_plan(path, "storage")
    assert plan.options.workers == 5
    assert plan.log_level == 10


def test_haneul_conf_option_overrides_the_environment(confs, tmp_path, monkeypatch):
    other = tmp_path / "other.conf"
    other.write_text("[hash]\nprefix = other\n")
    monkeypatch.setenv("HANEUL_CONF", str(tmp_path / "missing.conf"))
    plan = serve.load_plan(confs(defaults=f"haneul_conf = {other}\n"), "storage")
    assert os.environ["HANEUL_CONF"] == str(other)
    assert plan.listeners[0].make_app().diskfiles.hash_secrets.prefix == b"other"


def test_the_sample_storage_conf_loads(confs, monkeypatch):
    plan = serve.load_plan(SAMPLE, "storage")
    assert [item.port for item in plan.listeners] == [6200, 6201, 6202]
    assert plan.options.bind_ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[storage]\nworkers = many\n", "[storage]: workers must be an integer"),
        ("[object]\ndisk_chunk_size = big\n", "[object]: disk_chunk_size"),
        ("[container]\ndb_lock_timeout = x\n", "[container]: db_lock_timeout"),
        ("[DEFAULT]\nlog_level = loud\n", "log_level must be one of"),
        ("[object]\nport = 6201\n", "object and container both use port 6201"),
        ("[account]\nport = http\n", "account port must be an integer"),
    ],
)
def test_bad_options_name_the_file_section_and_option(confs, text, expected):
    path = confs(text)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")) as err:
        serve.load_plan(path, "storage")
    assert str(err.value).startswith(path)


def run_main(capsys, argv):
    code = serve.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def test_missing_config_file_exits_2_with_one_line(capsys, tmp_path):
    code, err = run_main(capsys, ["storage", "-c", str(tmp_path / "nope.conf")])
    assert code == 2
    assert err.strip().splitlines() == [
        f"haneul serve storage: config file not found: {tmp_path / 'nope.conf'}"
    ]


def test_missing_hash_secrets_exit_2(capsys, confs, tmp_path, monkeypatch):
    monkeypatch.setenv("HANEUL_CONF", str(tmp_path / "none.conf"))
    code, err = run_main(capsys, ["object", "-c", confs()])
    assert code == 2 and "none.conf" in err and len(err.strip().splitlines()) == 1


def test_a_port_in_use_exits_2(capsys, confs):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        code, err = run_main(capsys, ["account", "-c", confs(f"[account]\nport = {port}\n")])
    finally:
        holder.close()
    assert code == 2
    assert err.strip().endswith(f"cannot listen on 127.0.0.1:{port}: address already in use")


def test_serve_agent_with_a_missing_config_exits_2_in_one_line(tmp_path):
    # A subprocess: the agent monkey-patches its process for eventlet.
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "agent", "-c", str(tmp_path / "no.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "no.conf" in proc.stderr


def test_serve_proxy_without_rings_exits_2_naming_the_ring(capsys, tmp_path):
    conf = tmp_path / "proxy.conf"
    conf.write_text(
        f"[DEFAULT]\nring_dir = {tmp_path}\n[pipeline:main]\npipeline = proxy\n"
        "[app:proxy]\nuse = proxy\n"
    )
    code, err = run_main(capsys, ["proxy", "-c", str(conf)])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "ring" in err and str(tmp_path) in err


def test_unknown_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve.main(["database"])
    assert exit_info.value.code == 2


def test_the_command_line_exits_2_without_a_traceback(tmp_path):
    conf = tmp_path / "storage.conf"
    conf.write_text("[DEFAULT]\nworkers = lots\n")
    haneul = tmp_path / "haneul.conf"
    haneul.write_text("[hash]\nprefix = p\n")
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "storage", "-c", str(conf)],
        cwd=ROOT,
        env={**os.environ, "HANEUL_CONF": str(haneul), "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"haneul serve storage: {conf} [storage]: workers must be an integer, got 'lots'"
    ]
