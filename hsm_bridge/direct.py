"""Signing with the interpreter lock held: `C_SignInit` + `C_Sign` called
straight from the module's exported symbols through `ctypes.PyDLL`.

python-pkcs11 releases the GIL around every PKCS#11 call, which is right for
a slow call and wrong for a signature that takes SoftHSM2 60-80 µs: each
release hands the interpreter to the event loop's thread, and getting it back
waits for that thread to reach its switch interval. With the loop busy (a
load of OCSP, time-stamp and signHash requests) the PKCS#11 thread then
spent most of each signature waiting for the lock: measured here, a thread
signing P-256 digests beside a busy Python thread managed 3,700 signatures/s
through python-pkcs11 and 7,700/s through these calls (16,300/s alone), the
most a fair share of one interpreter allows. The calls are short and never
block on I/O, so holding the lock through them costs the loop at most one
signature's time.

Only the per-digest signature of the batch paths goes through here (owner
keys under a SAD, the service's OCSP/TSA/CA keys); everything else stays on
python-pkcs11. The session and key handles are python-pkcs11's own (same
module instance: `dlopen` of the loaded path returns it), and every call
runs on the process's one PKCS#11 thread like every other. A module that
does not export the two symbols (PKCS#11 only requires `C_GetFunctionList`)
gets no `DirectSigner`, and the callers fall back to python-pkcs11.
"""

from __future__ import annotations

import ctypes
from typing import Any, Final

from pkcs11.exceptions import PKCS11Error

__all__ = ["DirectSigner", "direct_signer"]

CKM_RSA_PKCS: Final = 0x0001
CKM_RSA_PKCS_PSS: Final = 0x000D
CKM_ECDSA: Final = 0x1041
#: Room for any signature the service makes (RSA-4096 is 512 bytes).
_MAX_SIGNATURE: Final = 1024


class _Mechanism(ctypes.Structure):
    _fields_ = (
        ("mechanism", ctypes.c_ulong),
        ("parameter", ctypes.c_void_p),
        ("parameter_len", ctypes.c_ulong),
    )


class _PssParams(ctypes.Structure):
    _fields_ = (("hash_alg", ctypes.c_ulong), ("mgf", ctypes.c_ulong), ("salt_len", ctypes.c_ulong))


class DirectSigner:
    """`C_SignInit` + `C_Sign` of one module, the GIL held throughout."""

    def __init__(self, library: Any) -> None:
        self._sign_init = library.C_SignInit
        self._sign_init.argtypes = (ctypes.c_ulong, ctypes.POINTER(_Mechanism), ctypes.c_ulong)
        self._sign_init.restype = ctypes.c_ulong
        self._sign = library.C_Sign
        self._sign.argtypes = (
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_ulong),
        )
        self._sign.restype = ctypes.c_ulong
        self._out = ctypes.create_string_buffer(_MAX_SIGNATURE)
        self._out_len = ctypes.c_ulong()

    def __repr__(self) -> str:
        return "DirectSigner()"

    def sign(
        self, key: Any, mechanism: int, data: bytes, pss: tuple[int, int, int] | None = None
    ) -> bytes:
        """Sign `data` with the python-pkcs11 key object `key` (on the
        PKCS#11 thread; the output buffer is this signer's)."""
        wrapper = getattr(key, "wrapper", key)  # python-pkcs11 0.10 wraps its handles
        session = wrapper.session.handle
        params = _PssParams(*pss) if pss is not None else None
        mech = _Mechanism(
            mechanism,
            ctypes.cast(ctypes.pointer(params), ctypes.c_void_p) if params is not None else None,
            ctypes.sizeof(_PssParams) if params is not None else 0,
        )
        rv = self._sign_init(session, ctypes.byref(mech), wrapper.handle)
        if rv != 0:
            raise PKCS11Error(f"C_SignInit returned {rv:#x}")
        self._out_len.value = _MAX_SIGNATURE
        rv = self._sign(session, data, len(data), self._out, ctypes.byref(self._out_len))
        if rv != 0:
            raise PKCS11Error(f"C_Sign returned {rv:#x}")
        return self._out.raw[: self._out_len.value]


def direct_signer(module_path: str) -> DirectSigner | None:
    """The module's direct signer, or None if it does not export the calls."""
    try:
        return DirectSigner(ctypes.PyDLL(module_path))
    except (OSError, AttributeError):
        return None
