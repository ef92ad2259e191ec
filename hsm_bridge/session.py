"""The per-process PKCS#11 state and the lifecycle every bridge shares.

Owns the loaded module (one per library path), the one PKCS#11 thread per
module, the login shared by all bridges on a token, and `HsmSession`: the base
class that logs in on `start()`, opens its working session on that thread and
runs every call there (`_call`), with per-session caching of persistent keys;
also the attribute template every secret of the bridge shares. The key
operations themselves live in `transport`, `custody`, `service_keys`
and `sealing`.

Threads: python-pkcs11 initialises the module with `C_Initialize(NULL)`,
which tells it the application will not call in from several threads at
once; SoftHSM2 then turns its internal mutexes off, and concurrent calls
(even on separate sessions) corrupt its object store (seen as
CKR_GENERAL_ERROR and crashes under load). So every PKCS#11 call of the
process runs on one dedicated thread, shared by all bridges on a module; the
async methods only await it, so the event loop never blocks on the HSM.
Parallelism beyond one core would come from several processes, each with its
own module instance (SoftHSM2 shares token objects between processes through
its file store), not from threads.

Token writes by several processes (`serialise_token_writes`,
`HsmSession._token_write`): SoftHSM2's file store tells a process that
another one changed the token through a generation counter on disk, and
re-reads the token directory when the counter differs from the value it last
saw. But a process's own write (an object created or destroyed) takes the
counter as it finds it on disk, adds one and remembers the result, without
re-reading the directory first: if process A created an object since B
last looked, B's write swallows A's notice, and B never sees A's object
until some process writes again (SoftHSM2 2.6.1 `Generation::commit`;
reproduced: A creates a key, B creates one, B looks for A's: missing in 20
of 20 rounds). The service creates objects in one process that another
uses (a transport key answered through another process, a SAD's key used by
another process), so every token write of the bridge runs under an
exclusive `flock` on a file beside the token directory, shared by every
process on it, and looks the token over first (any object search makes
SoftHSM2 compare the counter and re-read), so the counter a write starts
from is always one this process has seen. Other readers take no lock. A
process killed while it holds the lock releases it with its descriptors.
Token creation and provisioning at start-up (`softhsm.token_setup`) and a
bridge's start (the module's load and the login) hold the same lock: read
while another process writes one of its objects, a token can come out
missing (a start that took that for "no token" made a second token of the
same label, seen with `serve --workers 2` on a loaded machine) or refuse
the login (CKR_GENERAL_ERROR). With a network HSM, which has no such
store, no lock file is set and writes run as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

import pkcs11
from pkcs11 import Attribute, ObjectClass
from pkcs11.exceptions import NoSuchKey, PKCS11Error

from hsm_bridge.errors import HsmConfigurationError, HsmError, HsmUnavailableError
from hsm_bridge.secret import Secret

P = ParamSpec("P")
T = TypeVar("T")

#: Told of every PKCS#11 call: `(operation, seconds queued, seconds running)`.
#: The service feeds its metrics with it; the bridge itself keeps no figures.
CallObserver = Callable[[str, float, float], None]

#: The trusted master wrapping key (see `custody`). `start()` looks it up so
#: that a bridge on an unprovisioned token fails at start, not at first use.
MASTER_KEY_LABEL: Final = "cloudsign-master"
#: Masters replaced by a rotation (`hsm_bridge.custody`): they unwrap the
#: owner keys not yet re-wrapped, and wrap nothing.
RETIRED_MASTER_PREFIX: Final = MASTER_KEY_LABEL + "-retired-"

#: Attributes of every secret the bridge creates: never readable, never
#: leaving the HSM.
SECRET_SENSITIVE: Final = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.PRIVATE: True,
}

#: A label no object has: searching for it only makes SoftHSM2 re-read the
#: token if another process changed it.
_REFRESH_LABEL: Final = "cloudsign-refresh"

_state_lock = threading.Lock()
_loaded_libs: dict[str, Any] = {}
_executors: dict[str, ThreadPoolExecutor] = {}
_write_lock_path: Path | None = None
_write_lock_fd: int | None = None
_write_lock_depth = 0
_write_lock = threading.RLock()


def serialise_token_writes(lock_file: Path | None) -> None:
    """Make every token write of this process take `lock_file` (see the
    module doc); None: writes take no lock (a network HSM)."""
    global _write_lock_path, _write_lock_fd
    with _write_lock:
        if _write_lock_fd is not None and lock_file != _write_lock_path:
            os.close(_write_lock_fd)
            _write_lock_fd = None
        _write_lock_path = lock_file


@contextlib.contextmanager
def token_write_lock() -> Iterator[bool]:
    """Hold the cross-process write lock (re-entrant in the process); yields
    whether this is the outermost hold, which must refresh the token."""
    global _write_lock_fd, _write_lock_depth
    with _write_lock:
        if _write_lock_path is None:
            yield False
            return
        if _write_lock_fd is None:
            _write_lock_fd = os.open(_write_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fd = _write_lock_fd
        outermost = _write_lock_depth == 0
        if outermost:
            fcntl.flock(fd, fcntl.LOCK_EX)
        _write_lock_depth += 1
        try:
            yield outermost
        finally:
            _write_lock_depth -= 1
            if outermost:
                fcntl.flock(fd, fcntl.LOCK_UN)


def _hsm_thread(module_path: str) -> ThreadPoolExecutor:
    """The one thread that talks to `module_path` in this process."""
    with _state_lock:
        executor = _executors.get(module_path)
        if executor is None:
            executor = ThreadPoolExecutor(1, thread_name_prefix="pkcs11")
            _executors[module_path] = executor
        return executor


def module_loaded() -> bool:
    with _state_lock:
        return bool(_loaded_libs)


def _load_lib(path: str) -> Any:
    with _state_lock:
        lib = _loaded_libs.get(path)
        if lib is None:
            try:
                lib = pkcs11.lib(path)
            except (PKCS11Error, RuntimeError, OSError) as e:
                raise HsmUnavailableError(f"cannot load PKCS#11 module {path}") from e
            _loaded_libs[path] = lib
        return lib


# PKCS#11 login state belongs to the process, not the session: several bridges
# on one token (tests, a CLI inside a server process) share one login session,
# and the last one to close logs out.
_logins: dict[tuple[str, str], tuple[Any, int]] = {}


def _login(module_path: str, token: Any, token_label: str, pin: Secret) -> Any:
    with _state_lock:
        key = (module_path, token_label)
        held = _logins.get(key)
        if held is not None:
            _logins[key] = (held[0], held[1] + 1)
            return held[0]
        try:
            session = token.open(user_pin=pin.reveal(), rw=True)
        except pkcs11.exceptions.PinIncorrect as e:
            raise HsmUnavailableError("the HSM rejected the user PIN") from e
        except PKCS11Error as e:
            raise HsmUnavailableError(f"cannot log in to token {token_label!r}") from e
        _logins[key] = (session, 1)
        return session


def _logout(module_path: str, token_label: str) -> None:
    with _state_lock:
        key = (module_path, token_label)
        held = _logins.get(key)
        if held is None:
            return
        if held[1] > 1:
            _logins[key] = (held[0], held[1] - 1)
            return
        del _logins[key]
        with contextlib.suppress(PKCS11Error):
            held[0].close()


class HsmSession:
    """Async front of one PKCS#11 token: lifecycle and the PKCS#11 thread.

    `start()` logs in once (the login is per application in PKCS#11, shared
    by all bridges of the process) and the bridge opens its own working
    session on the process's PKCS#11 thread.
    """

    def __init__(self, module_path: str, token_label: str, pin: Secret):
        self._module_path = module_path
        self._token_label = token_label
        self._pin = pin
        self._executor: ThreadPoolExecutor | None = None
        self._token: Any = None
        self._login_session: Any = None
        self._local = threading.local()
        self._sessions: list[Any] = []
        self._sessions_lock = threading.Lock()
        #: Calls of this bridge submitted and not yet finished (queue depth).
        self.pending = 0
        self.observer: CallObserver | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(module={self._module_path!r}, token={self._token_label!r})"

    def _start(self) -> None:
        # Under the token write lock: SoftHSM2 reading the token (its load at
        # C_Initialize, the login) while another process writes an object can
        # fail (CKR_GENERAL_ERROR at C_Login, seen with two processes).
        with token_write_lock():
            lib = _load_lib(self._module_path)
            try:
                self._token = lib.get_token(token_label=self._token_label)
            except PKCS11Error as e:
                raise HsmUnavailableError(f"token {self._token_label!r} not found") from e
            self._login_session = _login(
                self._module_path, self._token, self._token_label, self._pin
            )
            try:
                self._find_key(self._login_session, ObjectClass.SECRET_KEY, MASTER_KEY_LABEL)
            except HsmError:
                self._close()
                raise

    async def start(self) -> None:
        self._executor = _hsm_thread(self._module_path)
        try:
            await self._call(self._start)
        except BaseException:
            self._executor = None
            raise

    def _close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            with contextlib.suppress(PKCS11Error):
                s.close()
        # Forget the closed session and its cached key handles: a restarted
        # bridge opens fresh ones.
        self._local = threading.local()
        if self._login_session is not None:
            _logout(self._module_path, self._token_label)
            self._login_session = None

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._call(self._close)
        self._executor = None

    def _ping(self) -> None:
        self._find_key(self._session(), ObjectClass.SECRET_KEY, MASTER_KEY_LABEL)

    async def ping(self) -> None:
        """A round trip to the token (find the master key): raises when the
        token is gone or the login was lost (the service's `/readyz`)."""
        await self._call(self._ping)

    async def run_with_session(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(session)` on the PKCS#11 thread with this bridge's session:
        for operator tools and tests that need the raw python-pkcs11 API."""
        return await self._call(lambda: fn(self._session()))

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._executor is None:
            raise HsmUnavailableError("the HSM bridge is not started")
        loop = asyncio.get_running_loop()
        submitted = began = time.perf_counter()

        def timed() -> T:
            nonlocal began
            began = time.perf_counter()
            return fn(*args, **kwargs)

        self.pending += 1
        try:
            return await loop.run_in_executor(self._executor, timed)
        finally:
            self.pending -= 1
            if self.observer is not None:
                name = getattr(fn, "__name__", "session").lstrip("_").replace("<lambda>", "session")
                self.observer(name, began - submitted, time.perf_counter() - began)

    def _session(self) -> Any:
        s = getattr(self._local, "session", None)
        if s is None:
            if self._token is None:
                raise HsmUnavailableError("the HSM bridge is not started")
            s = self._token.open(rw=True)
            self._local.session = s
            self._local.keys = {}
            with self._sessions_lock:
                self._sessions.append(s)
        return s

    @contextlib.contextmanager
    def _token_write(self) -> Iterator[None]:
        """Around every creation or destruction of a token object, on the
        PKCS#11 thread: the cross-process write lock, and a look at the
        token so that the write starts from its latest state (module doc)."""
        with token_write_lock() as outermost:
            if outermost:
                list(self._session().get_objects({Attribute.LABEL: _REFRESH_LABEL}))
            yield

    def _cached_key(self, object_class: ObjectClass, label: str) -> Any:
        """Persistent keys are looked up once per worker session."""
        session = self._session()
        cache: dict[tuple[ObjectClass, str], Any] = self._local.keys
        key = cache.get((object_class, label))
        if key is None:
            key = self._find_key(session, object_class, label)
            cache[(object_class, label)] = key
        return key

    @staticmethod
    def _find_key(session: Any, object_class: ObjectClass, label: str) -> Any:
        try:
            return session.get_key(object_class=object_class, label=label)
        except NoSuchKey as e:
            raise HsmConfigurationError(f"HSM object {label!r} not found") from e
