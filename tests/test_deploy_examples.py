"""The deployment examples in deploy/ work as documented in docs/deploy.md: nginx accepts the
reverse-proxy config (`nginx -t`) and serves the API through it; the systemd unit's commands start
the API; the environment file holds settings the app accepts; every gunicorn setting is documented."""

from __future__ import annotations

import configparser
import datetime as dt
import ipaddress
import os
import re
import shlex
import shutil
import subprocess
import time

import pytest
import requests
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.config import PROJECT_ROOT, Settings
from tests.conftest import PG_URL, free_port, stop_process_group, wait_until_serving

DEPLOY = PROJECT_ROOT / "deploy"
NGINX_CONF = DEPLOY / "nginx.conf"
UNIT = DEPLOY / "reflexdb.service"
ENV_FILE = DEPLOY / "reflexdb.env"
GUNICORN_CONF = (PROJECT_ROOT / "gunicorn.conf.py").read_text()
DEPLOY_DOC = (PROJECT_ROOT / "docs" / "deploy.md").read_text()
CERT_PATHS = ("/etc/ssl/reflexdb/fullchain.pem", "/etc/ssl/reflexdb/privkey.pem")


# -- nginx ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nginx() -> str:
    """The nginx binary, installed from Debian's packages when missing (as .ci/run does).
    An nginx that cannot be installed fails the tests loudly: they never skip."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail("nginx is not installed and only root can install it: `apt-get install -y nginx`",
                    pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "nginx"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"could not install nginx ({' '.join(command)}):\n{done.stdout}{done.stderr}",
                        pytrace=False)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def _self_signed(folder):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")])
    now = dt.datetime.now(dt.timezone.utc)
    names = x509.SubjectAlternativeName([x509.DNSName("api.example.com"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).add_extension(names, critical=False)
            .sign(key, hashes.SHA256()))
    chain, private = folder / "fullchain.pem", folder / "privkey.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return chain, private


def _example_site(tmp_path, **replace) -> str:
    """deploy/nginx.conf with its certificate paths pointing at a fresh self-signed pair, and
    `replace` applied; each replaced text must be in the example (else the test is stale)."""
    site = NGINX_CONF.read_text()
    chain, private = _self_signed(tmp_path)
    replace = {CERT_PATHS[0]: str(chain), CERT_PATHS[1]: str(private), **replace}
    for old, new in replace.items():
        assert old in site, f"deploy/nginx.conf no longer holds {old!r}: update this test"
        site = site.replace(old, new)
    return site


def _main_conf(tmp_path, site: str) -> str:
    """A main nginx.conf around the example, as /etc/nginx/nginx.conf includes conf.d/*.conf,
    with every file nginx writes kept in `tmp_path`."""
    (tmp_path / "reflexdb.conf").write_text(site)
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / folder).mkdir(exist_ok=True)
    main = tmp_path / "nginx.conf"
    main.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path}/access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/reflexdb.conf;
}}
""")
    return str(main)


def test_nginx_accepts_the_example(nginx, tmp_path):
    main = _main_conf(tmp_path, _example_site(tmp_path))
    checked = subprocess.run([nginx, "-t", "-c", main, "-e", str(tmp_path / "error.log")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr, checked.stderr


def test_the_api_is_served_through_the_example(nginx, live_server, tmp_path):
    https_port, http_port = free_port(), free_port()
    api_port = live_server.rsplit(":", 1)[1].split("/")[0]
    site = _example_site(tmp_path, **{
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "server 127.0.0.1:8080": f"server 127.0.0.1:{api_port}",
    })
    main = _main_conf(tmp_path, site)
    proc = subprocess.Popen([nginx, "-c", main, "-e", str(tmp_path / "error.log"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"https://127.0.0.1:{https_port}"
    ca = str(tmp_path / "fullchain.pem")  # the self-signed certificate nginx serves
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = requests.get(f"{base}/v1/health", verify=ca, timeout=5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "storage": "postgresql"}

        redirect = requests.get(f"http://127.0.0.1:{http_port}/v1/health", allow_redirects=False, timeout=5)
        assert redirect.status_code == 301
        assert redirect.headers["location"] == "https://127.0.0.1/v1/health"

        # The API's own 413 passes through (nginx lets up to 2 MiB reach it).
        too_large = requests.post(f"{base}/v1/connections", data=b"{" + b" " * (1536 * 1024) + b"}",
                                  headers={"Content-Type": "application/json"}, verify=ca, timeout=10)
        assert too_large.status_code == 413
        assert too_large.json()["error"] == "payload_too_large"

        assert requests.get(f"{base}/v1/reference", verify=ca, timeout=10).status_code == 200
    finally:
        stop_process_group(proc)


# -- systemd ------------------------------------------------------------------------------------


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_the_unit_stops_gracefully_and_reloads_with_hup():
    service = _unit()["Service"]
    graceful = int(re.search(r"^graceful_timeout = (\d+)$", GUNICORN_CONF, re.M)[1])
    timeout_stop = int(service["TimeoutStopSec"])
    assert timeout_stop > graceful, "systemd would SIGKILL workers still finishing their requests"
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert service["ExecReload"] == "/bin/kill -s HUP $MAINPID"
    assert service["Type"] == "notify"  # gunicorn's master sends READY=1


def _environment_file() -> dict:
    return dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines()
                if line.strip() and not line.startswith("#"))


def test_the_environment_file_holds_settings_the_app_accepts(tmp_path):
    env = _environment_file()
    assert env["REFLEXDB_SECRET_KEYS"] == "CHANGE-ME" and "CHANGE-ME" in env["DATABASE_URL"]
    env |= {"REFLEXDB_SECRET_KEYS": Fernet.generate_key().decode(), "REFLEXDB_DATA_DIR": str(tmp_path)}
    settings = Settings.from_env(environ=env)
    assert (settings.workers, settings.threads, settings.access_log) == (4, 2, None)
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name in env:
        if name.startswith("REFLEXDB_") or name == "DATABASE_URL":
            assert f"`{name}`" in readme, f"{name} is not in the README's settings table"


def test_the_units_commands_start_the_api(stack, tmp_path):
    """ExecStartPre and ExecStart, run as systemd would (paths moved to this checkout)."""
    service = _unit()["Service"]

    def command(line):
        return shlex.split(line.replace("/opt/reflexdb/.venv/bin/", str(PROJECT_ROOT / ".venv" / "bin") + "/")
                           .replace("/opt/reflexdb", str(PROJECT_ROOT)))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env |= _environment_file() | {
        "DATABASE_URL": PG_URL, "REFLEXDB_SECRET_KEYS": stack.settings.secret_keys[0],
        "REFLEXDB_BIND": f"127.0.0.1:{port}", "REFLEXDB_WORKERS": "1", "REFLEXDB_DB_POOL_SIZE": "4",
        "REFLEXDB_DATA_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    cwd = service["WorkingDirectory"].replace("/opt/reflexdb", str(PROJECT_ROOT))
    migrated = subprocess.run(command(service["ExecStartPre"]), cwd=cwd, env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command(service["ExecStart"]), cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/v1/health", proc, log_path)
        proc.terminate()  # KillSignal: the master stops its workers
        assert proc.wait(timeout=int(service["TimeoutStopSec"])) == 0, log_path.read_text()[-2000:]
    finally:
        stop_process_group(proc)


# -- docs/deploy.md ------------------------------------------------------------------------------


def test_every_gunicorn_setting_of_the_project_is_documented():
    settings = re.findall(r"^([a-z_]+) = ", GUNICORN_CONF, re.M)
    assert {"worker_class", "workers", "timeout", "keepalive", "control_socket_disable"} <= set(settings)
    for name in settings:
        assert f"`{name}`" in DEPLOY_DOC, f"gunicorn.conf.py sets {name}; docs/deploy.md must explain it"
    for name in ("threads", "forwarded_allow_ips", "preload_app", "errorlog", "loglevel", "graceful_timeout",
                 "max_requests", "worker_tmp_dir"):
        assert f"`{name}`" in DEPLOY_DOC, name
    assert "deploy/nginx.conf" in DEPLOY_DOC and "deploy/reflexdb.service" in DEPLOY_DOC
