"""The data dir keeps its secrets to itself: every directory 0700, every file
0600 (no exceptions, see `cloudsign.instance`) after `cloudsign init` and
while and after `cloudsign serve` runs, whatever the caller's umask; no
`so.pin`; a data dir of an older version is tightened and forgets its SO
PIN; an interrupted initialisation is started over; and no PIN is ever on a
command line or in an environment of any process `init` starts.

Everything runs as real processes (`python -m cloudsign.cli`), with an
environment free of CLOUDSIGN_/SOFTHSM2_ settings and a loose umask (022),
so the modes on disk are the program's doing, not the test's.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, free_port
from tests.serving import CLI, clean_env, serve, stop, wait_ready

LOOSE_UMASK = 0o022
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SOFTHSM_UTIL = "softhsm2-util"
#: The softhsm2.conf `hsm_bridge.softhsm.configure` writes.
CONF = (
    "directories.tokendir = {tokens}\n"
    "objectstore.backend = file\n"
    "log.level = ERROR\n"
    "slots.removable = false\n"
)


# -- helpers ------------------------------------------------------------------


def _init(data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--data-dir", str(data), "init"],
        cwd=REPO,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        umask=LOOSE_UMASK,
    )


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    """For `tests.serving.serve`, whose Popen takes the umask of this process."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    with _umask(LOOSE_UMASK):
        return serve(data, port)


def _wrong_modes(root: Path) -> list[str]:
    """Everything under `root` (itself included) that is not a 0700
    directory or a 0600 regular file."""
    wrong: list[str] = []
    for path in [root, *root.rglob("*")]:
        try:
            st = path.lstat()
        except FileNotFoundError:  # a running server's temporary file, gone
            continue
        mode = stat.S_IMODE(st.st_mode)
        is_dir, is_file = stat.S_ISDIR(st.st_mode), stat.S_ISREG(st.st_mode)
        ok = mode == 0o700 if is_dir else is_file and mode == 0o600
        if not ok:
            wrong.append(f"{path.relative_to(root)}: {stat.filemode(st.st_mode)}")
    return wrong


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State and parent pid, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[0].decode(), int(fields[1])


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            got = _proc_stat(int(entry.name))
            if got is not None:
                parents[int(entry.name)] = got[1]
    found = {root}
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found - {root}


def _umask_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return None


def _token(data: Path, code: str, stdin: str = "") -> str:
    """Run `code` with python-pkcs11 on the data dir's token (`token` bound);
    returns what it printed. PINs go on stdin, as they would in the service."""
    script = (
        "import sys, pkcs11\n"
        f"token = pkcs11.lib({MODULE!r}).get_token(token_label='cloudsign')\n" + code
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=stdin,
        env=clean_env(SOFTHSM2_CONF=str(data / "hsm" / "softhsm2.conf")),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


_SO_LOGIN = """
try:
    token.open(so_pin=sys.stdin.read(), rw=True).close()
    print("accepted")
except pkcs11.exceptions.PinIncorrect:
    print("rejected")
"""

_MASTER = """
from pkcs11 import Attribute, ObjectClass
s = token.open(user_pin=sys.stdin.read(), rw=True)
key = s.get_key(object_class=ObjectClass.SECRET_KEY, label="cloudsign-master")
print(key[Attribute.TRUSTED], key[Attribute.PRIVATE], key[Attribute.WRAP_WITH_TRUSTED])
"""


def _root_pem(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/pki/ca/root.pem", timeout=10) as r:
        return bytes(r.read())


def _check_running(proc: subprocess.Popen[bytes], data: Path) -> None:
    """While it serves: modes (SQLite's -wal/-shm exist now) and the umask of
    the server and of every process it started (anvil, face workers)."""
    assert _wrong_modes(data) == []
    family = {proc.pid, *_descendants(proc.pid)}
    assert len(family) > 1, "serve started no child process"
    masks = {pid: _umask_of(pid) for pid in family}
    assert {pid: m for pid, m in masks.items() if m is not None and m & 0o077 != 0o077} == {}


# -- modes after init and serve ------------------------------------------------


@pytest.mark.slow
def test_init_then_serve_keep_the_data_dir_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = _init(data)
    assert done.returncode == 0, done.stderr
    pin = (data / "hsm" / "user.pin").read_text().strip()
    assert len(pin) >= 24
    assert pin not in done.stdout + done.stderr
    assert _wrong_modes(data) == []
    assert not (data / "hsm" / "so.pin").exists()
    assert not (data / "hsm" / "staging").exists()
    # What the service and SoftHSM2 need is all there, and private.
    for part in ("hsm/softhsm2.conf", "hsm/tokens", "pki/root.pem", "cloudsign.db"):
        assert (data / part).exists(), part

    port = free_port()
    proc = _serve(data, port)
    try:
        wait_ready(proc, port)
        first_root = _root_pem(port)
        _check_running(proc, data)
    finally:
        log = stop(proc)
    assert pin not in log
    assert _wrong_modes(data) == []
    assert not (data / "hsm" / "so.pin").exists()

    # A restart on the same dir: same CA, same rules.
    proc = _serve(data, port)
    try:
        wait_ready(proc, port)
        assert _root_pem(port) == first_root
        _check_running(proc, data)
    finally:
        log = stop(proc)
    assert "Traceback" not in log, log[-2000:]
    assert _wrong_modes(data) == []
    assert not (data / "hsm" / "so.pin").exists()


@pytest.mark.slow
def test_serve_on_a_fresh_data_dir_keeps_it_private(tmp_path: Path) -> None:
    """Without `init`: the database is created (by the app's first cleanup
    context) before the HSM is prepared, so this is what the umask set at
    import protects."""
    data = tmp_path / "fresh" / "data"
    port = free_port()
    proc = _serve(data, port)
    try:
        wait_ready(proc, port)
        _check_running(proc, data)
    finally:
        log = stop(proc)
    assert _wrong_modes(tmp_path / "fresh") == []
    assert not (data / "hsm" / "so.pin").exists()
    assert (data / "hsm" / "user.pin").read_text().strip() not in log


# -- data dirs from before -----------------------------------------------------


def test_loose_modes_are_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cloudsign.instance import secure_data_dir
    from cloudsign.settings import load_settings

    data = tmp_path / "data"
    (data / "pki").mkdir(parents=True)
    (data / "pki" / "root.pem").write_text("public")
    (data / "cloudsign.db-wal").write_text("wal")
    (data / "hsm").mkdir()
    (data / "hsm" / "user.pin").write_text("a-pin-that-must-not-be-logged")
    read_only = data / "hsm" / "read-only"
    read_only.write_text("x")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (data / "link").symlink_to(outside)
    for path in [data, data / "pki", data / "hsm", *data.rglob("*.*"), data / "hsm" / "user.pin"]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    read_only.chmod(0o444)

    with caplog.at_level("INFO", logger="cloudsign.instance"):
        changes = secure_data_dir(load_settings(env={}, data_dir=data))
    assert len(changes) == 7, changes
    assert sorted(_wrong_modes(data)) == ["hsm/read-only: -r--------", "link: lrwxrwxrwx"]
    # A symbolic link is not followed: its target is not the data dir's.
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    logged = caplog.text
    assert "user.pin: mode 0644 -> 0600" in logged and "not changing the mode" in logged
    assert "a-pin-that-must-not-be-logged" not in logged
    assert secure_data_dir(load_settings(env={}, data_dir=data)) == []


def _softhsm2_util_init(conf: Path, so_pin: str, user_pin: str) -> None:
    """A token made the way earlier versions did, PINs on the command line
    (fine here: throwaway PINs of a test)."""
    argv = [SOFTHSM_UTIL, "--init-token", "--free", "--label", "cloudsign"]
    argv += ["--so-pin", so_pin, "--pin", user_pin]
    made = subprocess.run(
        argv,
        env=clean_env(SOFTHSM2_CONF=str(conf)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr


def _old_style_data_dir(data: Path, so_pin: str, user_pin: str) -> None:
    """What earlier versions left: a token initialised by `softhsm2-util`, the
    SO PIN kept in hsm/so.pin, and modes as a 022 umask makes them."""
    hsm = data / "hsm"
    (hsm / "tokens").mkdir(parents=True)
    conf = hsm / "softhsm2.conf"
    conf.write_text(CONF.format(tokens=hsm / "tokens"))
    _softhsm2_util_init(conf, so_pin, user_pin)
    (hsm / "so.pin").write_text(so_pin)
    (hsm / "user.pin").write_text(user_pin)
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.slow
def test_an_old_data_dir_is_tightened_and_its_so_pin_retired(tmp_path: Path) -> None:
    data = tmp_path / "data"
    so_pin, user_pin = "old-so-pin-3141592653", "old-user-pin-2718281828"
    _old_style_data_dir(data, so_pin, user_pin)
    assert _wrong_modes(data) != []
    # The old version's token never got its master key (made only under the SO).
    done = _init(data)
    assert done.returncode == 0, done.stderr
    report = done.stdout
    assert "tightened" in report and "mode 0644 -> 0600" in report, report
    assert "created HSM keys:" in report and "cloudsign-master" in report
    assert "changed the legacy SO PIN" in report and "so.pin" in report
    assert so_pin not in report + done.stderr and user_pin not in report + done.stderr
    assert _wrong_modes(data) == []
    assert not (data / "hsm" / "so.pin").exists()
    # The file is gone and its value is worthless: the SO PIN was changed.
    assert _token(data, _SO_LOGIN, so_pin) == "rejected"
    assert _token(data, _MASTER, user_pin) == "True True True"
    assert (data / "hsm" / "user.pin").read_text() == user_pin

    # A copy of the old file put back (a backup, or a crash after the PIN
    # change and before the unlink): removed again, nothing else changes.
    (data / "hsm" / "so.pin").write_text(so_pin)
    again = _init(data)
    assert again.returncode == 0, again.stderr
    assert "removed" in again.stdout and "so.pin" in again.stdout
    assert "created HSM keys" not in again.stdout
    assert not (data / "hsm" / "so.pin").exists()


@pytest.mark.slow
def test_an_interrupted_initialisation_starts_over(tmp_path: Path) -> None:
    """A crash after `C_InitToken` and before the master key: the half-made
    token is in the staging area (its SO PIN died with the process), never in
    hsm/tokens; the next start discards it and makes a complete token with
    the user PIN written before the crash."""
    data = tmp_path / "data"
    staging = data / "hsm" / "staging"
    (staging / "tokens").mkdir(parents=True)
    conf = staging / "softhsm2.conf"
    conf.write_text(CONF.format(tokens=staging / "tokens"))
    user_pin = "written-before-the-crash-1234"
    _softhsm2_util_init(conf, "lost-with-the-process", user_pin)
    pin_file = data / "hsm" / "user.pin"
    pin_file.write_text(user_pin)
    pin_file.chmod(0o600)

    done = _init(data)
    assert done.returncode == 0, done.stderr
    assert "discarded a token left unfinished" in done.stdout
    assert not staging.exists()
    assert len(list((data / "hsm" / "tokens").iterdir())) == 1
    assert pin_file.read_text() == user_pin
    assert _token(data, _MASTER, user_pin) == "True True True"
    assert _wrong_modes(data) == []


# -- no PIN in any argv or environment ---------------------------------------

#: Loaded by every Python process of the observed run (PYTHONPATH): records
#: each value `secrets.token_urlsafe` hands out (the PINs are made that way,
#: in the init process and in its provisioning child) and, through an audit
#: hook, the argv and environment of every process a Python process starts.
#: The process table shows what really ran; this is the deterministic half
#: for children too short-lived to be sampled.
PROBE = """
import json, os, sys

_LOG = os.environ.get("PIN_PROBE_LOG")


def _write(kind, **data):
    line = json.dumps({"pid": os.getpid(), "kind": kind, **data}) + "\\n"
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _text(items):
    if isinstance(items, (str, bytes, os.PathLike)):
        items = [items]
    return [os.fsdecode(x) for x in items]


def _env(env):
    env = os.environ if env is None else env
    return {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}


def _hook(event, args):
    if event == "subprocess.Popen":
        _write("spawn", argv=_text(args[1]), env=_env(args[3]))
    elif event in ("os.posix_spawn", "os.exec"):
        _write("spawn", argv=_text(args[1]), env=_env(args[2]))


if _LOG:
    import secrets

    _token_urlsafe = secrets.token_urlsafe

    def token_urlsafe(nbytes=None):
        value = _token_urlsafe(nbytes)
        _write("secret", value=value)
        return value

    secrets.token_urlsafe = token_urlsafe
    sys.addaudithook(_hook)
"""


@dataclass
class Observed:
    returncode: int
    output: str
    #: (pid, cmdline, environ) as /proc showed them, each distinct once.
    samples: set[tuple[int, bytes, bytes]] = field(default_factory=set)
    rounds: int = 0
    #: pid -> values `secrets.token_urlsafe` returned in that process.
    secrets: dict[int, list[str]] = field(default_factory=dict)
    spawns: list[dict[str, Any]] = field(default_factory=list)

    def leaks(self, values: list[str]) -> list[str]:
        found: list[str] = []
        for pid, cmdline, environ in self.samples:
            for v in values:
                if v.encode() in cmdline:
                    found.append(f"pid {pid} argv")
                if v.encode() in environ:
                    found.append(f"pid {pid} environment")
        for spawn in self.spawns:
            argv: list[str] = spawn["argv"]
            env: dict[str, str] = spawn["env"]
            for v in values:
                if any(v in a for a in argv):
                    found.append(f"argv of a child of {spawn['pid']}: {argv[0]}")
                if any(v in e for e in env.values()):
                    found.append(f"environment of a child of {spawn['pid']}: {argv[0]}")
        return found


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours
        return b""


def _observe(tmp_path: Path, argv: list[str], **env: str) -> Observed:
    """Run `argv` under the probe and sample the cmdline and environ of it and
    all its descendants as fast as /proc allows until it exits."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "sitecustomize.py").write_text(PROBE)
    log = tmp_path / "probe.jsonl"
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=clean_env(PYTHONPATH=str(probe_dir), PIN_PROBE_LOG=str(log), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        umask=LOOSE_UMASK,
    )
    seen = Observed(returncode=0, output="")
    while proc.poll() is None:
        for pid in {proc.pid, *_descendants(proc.pid)}:
            cmdline = _read(f"/proc/{pid}/cmdline")
            environ = _read(f"/proc/{pid}/environ")
            if cmdline or environ:
                seen.samples.add((pid, cmdline, environ))
        seen.rounds += 1
    assert proc.stdout is not None
    seen.output = proc.stdout.read().decode()
    seen.returncode = proc.returncode
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "secret":
            seen.secrets.setdefault(record["pid"], []).append(record["value"])
        else:
            seen.spawns.append(record)
    return seen


@pytest.mark.slow
def test_no_pin_in_any_argv_or_environment_during_init(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seen = _observe(tmp_path, [*CLI, "--data-dir", str(data), "init"])
    assert seen.returncode == 0, seen.output
    user_pin = (data / "hsm" / "user.pin").read_text().strip()

    # The probe saw both PINs being made: the user PIN in init itself, the
    # SO PIN in another process (the provisioning child) only.
    made = [v for values in seen.secrets.values() for v in values]
    assert user_pin in made
    so_pins = [v for pid, values in seen.secrets.items() if user_pin not in values for v in values]
    assert so_pins, seen.secrets
    # The sampling was fine enough to catch the child that held the PINs,
    # and the audit hook saw every process start.
    assert any(b"hsm_bridge.provision" in cmdline for _, cmdline, _ in seen.samples)
    assert any("hsm_bridge.provision" in " ".join(s["argv"]) for s in seen.spawns)

    assert seen.leaks([user_pin, *so_pins]) == []
    assert user_pin not in seen.output
    assert not any(p in seen.output for p in so_pins)
    assert not (data / "hsm" / "so.pin").exists()


def test_the_probe_catches_a_pin_on_a_command_line(tmp_path: Path) -> None:
    """The check above can fail: the way tokens used to be initialised
    (`softhsm2-util --init-token --so-pin … --pin …`) is caught."""
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(CONF.format(tokens=tokens))
    old_way = (
        "import os, secrets, subprocess\n"
        "so, user = secrets.token_urlsafe(24), secrets.token_urlsafe(24)\n"
        f"subprocess.run([{SOFTHSM_UTIL!r}, '--init-token', '--free', '--label', 'x',"
        " '--so-pin', so, '--pin', user], check=True, capture_output=True)\n"
    )
    seen = _observe(tmp_path, [sys.executable, "-c", old_way], SOFTHSM2_CONF=str(conf))
    assert seen.returncode == 0, seen.output
    pins = [v for values in seen.secrets.values() for v in values]
    assert len(pins) == 2
    assert any("argv" in leak for leak in seen.leaks(pins))
