"""The PKCS#11 bridge: one logged-in token, a bounded pool of worker threads
each holding its own session, and the key-custody operations of the service.

Key custody (see ARCHITECTURE.md):

* A non-extractable AES-256 **master wrapping key** (`cloudsign-master`)
  carries `CKA_TRUSTED`. Owner private keys are generated with
  `CKA_WRAP_WITH_TRUSTED`, so only the master key can ever wrap them.
  SoftHSM2 lets only the SO set `CKA_TRUSTED`, and the SO sees public objects
  only, which SoftHSM2 stores *unencrypted* on disk. So provisioning creates
  the trusted key as a public *session* object (memory only) in an SO session,
  switches the login to the user, and copies it into a private token object
  (`provision.py`). The key value never touches the disk in the clear.
* **Transport keys**: one EC P-256 key pair per challenge, private half a
  token object (so any worker or process can use it), destroyed on first use
  whatever the outcome. The device does ECDH with it; SoftHSM2 offers only
  `CKD_NULL` for `CKM_ECDH1_DERIVE`, so the raw shared secret Z is not used
  as a key directly: the HSM derives `KEK = AES-256-ECB_Z(ctx)` with
  `CKM_AES_ECB_ENCRYPT_DATA`, where `ctx = SHA-256(label || key id || device
  point)` binds the KEK to this challenge and this device key. The device
  wraps `K_pw` under KEK with AES key wrap (RFC 3394); the HSM unwraps it
  straight into a sensitive, non-extractable session object.
* **Owner key blob**: `CSK1 || n3 || GCM_seal(n2 || GCM_Kpw(WRAP_master(priv)))`.
  The middle layer is the architecture's password layer; its GCM tag is the
  "password hash" kept by the HSM: a wrong `K_pw` fails inside the HSM.
  The outer layer, under a non-extractable HSM sealing key, is added so that
  a stolen database alone gives no offline oracle to guess passwords against.
  Both GCM layers take the credential id as associated data, so a blob cannot
  be moved to another credential.
* **Use**: the two GCM layers are opened in the HSM, the inner layer is
  unwrapped by the master key into a session-only, non-extractable key, used,
  and destroyed in a `finally`.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, ParamSpec, TypeVar

import pkcs11
from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from pkcs11 import KDF, MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.exceptions import MultipleObjectsReturned, NoSuchKey, PKCS11Error
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from hsm_bridge.algorithms import (
    HashAlgorithm,
    KeyAlgorithm,
    SignatureScheme,
    digest_info,
    ecdsa_raw_to_der,
)
from hsm_bridge.errors import (
    HsmConfigurationError,
    HsmError,
    HsmUnavailableError,
    InvalidTransportMessageError,
    KeyBlobError,
    TransportKeyError,
    UnsupportedAlgorithmError,
    WrongPasswordError,
)
from hsm_bridge.secret import Secret

P = ParamSpec("P")
T = TypeVar("T")

MASTER_KEY_LABEL: Final = "cloudsign-master"
HMAC_KEY_PREFIX: Final = "cloudsign-hmac-"
TRANSPORT_LABEL_PREFIX: Final = "transport:"
SEALING_KEY_PREFIX: Final = "cloudsign-seal-"
BLOB_MAGIC: Final = b"CSK1"
GCM_NONCE_BYTES: Final = 12
GCM_TAG_BITS: Final = 128
TRANSPORT_CONTEXT_LABEL: Final = b"cloudsign/transport/v1"
P256_OID: Final = "1.2.840.10045.3.1.7"
UNCOMPRESSED_P256_POINT_BYTES: Final = 65
WRAPPED_PASSWORD_KEY_BYTES: Final = 40  # RFC 3394 wrap of a 32-byte key

_state_lock = threading.Lock()
_loaded_libs: dict[str, Any] = {}
_executors: dict[str, ThreadPoolExecutor] = {}


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


def transport_context(transport_key_id: str, device_point: bytes) -> bytes:
    """The 32 bytes the KEK is derived from; the device computes the same."""
    return hashlib.sha256(
        TRANSPORT_CONTEXT_LABEL + b"\x00" + transport_key_id.encode() + b"\x00" + device_point
    ).digest()


@dataclass(frozen=True)
class TransportMessage:
    """What the device sends: its ephemeral public point and K_pw wrapped for
    the one-time HSM key `transport_key_id`."""

    transport_key_id: str
    device_point: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.device_point) != UNCOMPRESSED_P256_POINT_BYTES or self.device_point[0] != 4:
            raise InvalidTransportMessageError(
                "device public key must be an uncompressed P-256 point (65 bytes)"
            )
        if len(self.wrapped_key) != WRAPPED_PASSWORD_KEY_BYTES:
            raise InvalidTransportMessageError("wrapped password key must be 40 bytes (AES-KW)")
        # Reject points off the curve here rather than inside the HSM.
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.device_point)
        except ValueError as e:
            raise InvalidTransportMessageError("device public key is not a P-256 point") from e


@dataclass(frozen=True)
class CreatedKey:
    """A new owner key: its public half and the only stored form of the private half."""

    algorithm: KeyAlgorithm
    public_key_info: bytes  # DER SubjectPublicKeyInfo
    blob: bytes = field(repr=False)


@dataclass(frozen=True)
class UnlockedKey:
    """The owner key after the password layer was opened in the HSM: still
    wrapped under the master key, usable only inside this HSM."""

    credential_id: str
    algorithm: KeyAlgorithm
    wrapped: bytes = field(repr=False)


_SECRET_SENSITIVE: Final = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.PRIVATE: True,
}

#: A new owner private key: extractable only so the trusted master key can
#: wrap it once, and by no other key (`CKA_WRAP_WITH_TRUSTED`).
OWNER_KEY_TEMPLATE: Final = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: True,
    Attribute.WRAP_WITH_TRUSTED: True,
    Attribute.PRIVATE: True,
}

#: The owner key while it signs: session-only, never extractable again.
SIGNING_KEY_TEMPLATE: Final = {
    **_SECRET_SENSITIVE,
    Attribute.SIGN: True,
    # python-pkcs11 sets every capability flag; these are not valid on a
    # private key object, so leave them out.
    Attribute.ENCRYPT: pkcs11.DEFAULT,
    Attribute.VERIFY: pkcs11.DEFAULT,
    Attribute.WRAP: pkcs11.DEFAULT,
}


class HsmBridge:
    """Async front of one PKCS#11 token.

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

    def __repr__(self) -> str:
        return f"HsmBridge(module={self._module_path!r}, token={self._token_label!r})"

    # -- lifecycle ---------------------------------------------------------

    def _start(self) -> None:
        lib = _load_lib(self._module_path)
        try:
            self._token = lib.get_token(token_label=self._token_label)
        except PKCS11Error as e:
            raise HsmUnavailableError(f"token {self._token_label!r} not found") from e
        self._login_session = _login(self._module_path, self._token, self._token_label, self._pin)
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

    async def run_with_session(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(session)` on the PKCS#11 thread with this bridge's session:
        for operator tools and tests that need the raw python-pkcs11 API."""
        return await self._call(lambda: fn(self._session()))

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._executor is None:
            raise HsmUnavailableError("the HSM bridge is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

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

    # -- transport keys ----------------------------------------------------

    async def create_transport_key(self, transport_key_id: str) -> bytes:
        """Create the one-time ECDH key for a challenge; returns its SPKI (DER)."""
        return await self._call(self._create_transport_key, transport_key_id)

    def _create_transport_key(self, transport_key_id: str) -> bytes:
        s = self._session()
        params = s.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(P256_OID)}, local=True
        )
        pub, _priv = params.generate_keypair(
            store=True,
            label=TRANSPORT_LABEL_PREFIX + transport_key_id,
            id=transport_key_id.encode(),
            capabilities=MechanismFlag.DERIVE,
            public_template={Attribute.TOKEN: False},
            private_template={**_SECRET_SENSITIVE, Attribute.DERIVE: True, Attribute.SIGN: False},
        )
        try:
            return bytes(encode_ec_public_key(pub))
        finally:
            pub.destroy()

    async def destroy_transport_key(self, transport_key_id: str) -> bool:
        """Destroy an unused transport key (expiry sweep). True if one existed."""
        return await self._call(self._destroy_transport_key, transport_key_id)

    def _destroy_transport_key(self, transport_key_id: str) -> bool:
        objects = list(
            self._session().get_objects(
                {Attribute.LABEL: TRANSPORT_LABEL_PREFIX + transport_key_id}
            )
        )
        for obj in objects:
            obj.destroy()
        return bool(objects)

    @contextmanager
    def _password_key(self, message: TransportMessage) -> Iterator[Any]:
        """Unwrap K_pw into a session object; the transport key is consumed."""
        s = self._session()
        label = TRANSPORT_LABEL_PREFIX + message.transport_key_id
        try:
            priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        except (NoSuchKey, MultipleObjectsReturned) as e:
            raise TransportKeyError("transport key unknown, already used or expired") from e
        temporaries: list[Any] = []
        try:
            z = priv.derive_key(
                KeyType.AES,
                256,
                capabilities=MechanismFlag.DERIVE,
                mechanism_param=(KDF.NULL, None, message.device_point),
                template=_SECRET_SENSITIVE,
            )
            temporaries.append(z)
            kek = z.derive_key(
                KeyType.AES,
                256,
                mechanism=Mechanism.AES_ECB_ENCRYPT_DATA,
                mechanism_param=transport_context(message.transport_key_id, message.device_point),
                capabilities=MechanismFlag.UNWRAP,
                template=_SECRET_SENSITIVE,
            )
            temporaries.append(kek)
            kpw = kek.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.AES,
                message.wrapped_key,
                mechanism=Mechanism.AES_KEY_WRAP,
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                template=_SECRET_SENSITIVE,
            )
        except PKCS11Error as e:
            raise TransportKeyError("the wrapped password key does not unwrap") from e
        finally:
            for obj in temporaries:
                obj.destroy()
            # One-time: the transport key goes whatever the outcome, so a
            # captured message cannot be replayed and a wrong one cannot be retried.
            priv.destroy()
        try:
            yield kpw
        finally:
            kpw.destroy()

    # -- owner keys --------------------------------------------------------

    async def create_owner_key(
        self, message: TransportMessage, algorithm: KeyAlgorithm, credential_id: str
    ) -> CreatedKey:
        return await self._call(self._create_owner_key, message, algorithm, credential_id)

    def _create_owner_key(
        self, message: TransportMessage, algorithm: KeyAlgorithm, credential_id: str
    ) -> CreatedKey:
        s = self._session()
        master = self._cached_key(ObjectClass.SECRET_KEY, MASTER_KEY_LABEL)
        sealing = self._sealing_key("credential")
        aad = _blob_aad(credential_id)
        with self._password_key(message) as kpw:
            pub, priv = self._generate_pair(
                s,
                algorithm,
                store=False,
                private_template=OWNER_KEY_TEMPLATE,
            )
            try:
                inner = master.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
                spki = _public_key_info(pub, algorithm)
            finally:
                priv.destroy()
                pub.destroy()
            n2 = os.urandom(GCM_NONCE_BYTES)
            middle = n2 + kpw.encrypt(
                inner, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(n2, aad, GCM_TAG_BITS)
            )
        n3 = os.urandom(GCM_NONCE_BYTES)
        outer = sealing.encrypt(
            middle, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(n3, aad, GCM_TAG_BITS)
        )
        return CreatedKey(algorithm, spki, BLOB_MAGIC + n3 + outer)

    async def unlock_owner_key(
        self, message: TransportMessage, credential_id: str, algorithm: KeyAlgorithm, blob: bytes
    ) -> UnlockedKey:
        """Open the sealing and password layers; a wrong password fails here."""
        return await self._call(self._unlock_owner_key, message, credential_id, algorithm, blob)

    def _unlock_owner_key(
        self, message: TransportMessage, credential_id: str, algorithm: KeyAlgorithm, blob: bytes
    ) -> UnlockedKey:
        if not blob.startswith(BLOB_MAGIC) or len(blob) < len(BLOB_MAGIC) + 2 * GCM_NONCE_BYTES:
            raise KeyBlobError("key blob format not recognised")
        aad = _blob_aad(credential_id)
        n3 = blob[len(BLOB_MAGIC) : len(BLOB_MAGIC) + GCM_NONCE_BYTES]
        outer = blob[len(BLOB_MAGIC) + GCM_NONCE_BYTES :]
        sealing = self._sealing_key("credential")
        try:
            middle = sealing.decrypt(
                outer, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(n3, aad, GCM_TAG_BITS)
            )
        except PKCS11Error as e:
            raise KeyBlobError("key blob does not belong to this credential") from e
        n2, sealed = middle[:GCM_NONCE_BYTES], middle[GCM_NONCE_BYTES:]
        with self._password_key(message) as kpw:
            try:
                inner = kpw.decrypt(
                    sealed,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(n2, aad, GCM_TAG_BITS),
                )
            except PKCS11Error as e:
                raise WrongPasswordError("the key password is wrong") from e
        return UnlockedKey(credential_id, algorithm, bytes(inner))

    async def sign_with_unlocked(
        self,
        key: UnlockedKey,
        digests: Sequence[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes]:
        """Sign each digest with the owner key; the key lives in the HSM only
        for the duration of this call."""
        return await self._call(self._sign_with_unlocked, key, list(digests), hash_alg, scheme)

    def _sign_with_unlocked(
        self,
        key: UnlockedKey,
        digests: list[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes]:
        _check_scheme(key.algorithm, scheme)
        for d in digests:
            if len(d) != hash_alg.digest_size:
                raise UnsupportedAlgorithmError(
                    f"a {hash_alg.name} digest is {hash_alg.digest_size} bytes, got {len(d)}"
                )
        master = self._cached_key(ObjectClass.SECRET_KEY, MASTER_KEY_LABEL)
        key_type = KeyType.EC if key.algorithm.is_ec else KeyType.RSA
        try:
            priv = master.unwrap_key(
                ObjectClass.PRIVATE_KEY,
                key_type,
                key.wrapped,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                capabilities=MechanismFlag.SIGN,
                template=SIGNING_KEY_TEMPLATE,
            )
        except PKCS11Error as e:
            raise KeyBlobError("the owner key does not unwrap under the master key") from e
        try:
            return [_sign_digest(priv, d, hash_alg, scheme) for d in digests]
        finally:
            priv.destroy()

    # -- long-lived signing keys (CA, OCSP, TSA, log) --------------------------

    async def generate_signing_key(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        """A persistent, non-extractable key pair; returns its SPKI (DER)."""
        return await self._call(self._generate_signing_key, label, algorithm)

    def _generate_signing_key(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        s = self._session()
        if list(s.get_objects({Attribute.LABEL: label, Attribute.CLASS: ObjectClass.PRIVATE_KEY})):
            raise HsmConfigurationError(f"a key labelled {label!r} already exists")
        pub, _priv = self._generate_pair(
            s,
            algorithm,
            store=True,
            label=label,
            private_template={**_SECRET_SENSITIVE},
        )
        return _public_key_info(pub, algorithm)

    async def public_key_info(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        return await self._call(self._public_key_info_of, label, algorithm)

    def _public_key_info_of(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        return _public_key_info(self._cached_key(ObjectClass.PUBLIC_KEY, label), algorithm)

    async def sign_digest(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        digest: bytes,
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> bytes:
        return await self._call(self._sign_digest_named, label, algorithm, digest, hash_alg, scheme)

    def _sign_digest_named(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        digest: bytes,
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> bytes:
        _check_scheme(algorithm, scheme)
        return _sign_digest(
            self._cached_key(ObjectClass.PRIVATE_KEY, label), digest, hash_alg, scheme
        )

    async def sign_message(self, label: str, message: bytes) -> bytes:
        """Ed25519 (PureEdDSA) over the message itself."""
        return await self._call(self._sign_message, label, message)

    def _sign_message(self, label: str, message: bytes) -> bytes:
        key = self._cached_key(ObjectClass.PRIVATE_KEY, label)
        return bytes(key.sign(message, mechanism=Mechanism.EDDSA))

    async def has_key(self, label: str) -> bool:
        return await self._call(self._has_key, label)

    def _has_key(self, label: str) -> bool:
        return bool(list(self._session().get_objects({Attribute.LABEL: label})))

    # -- keyed hashes (pseudonymous owner tags in the public audit log) --------

    async def hmac_sha256(self, purpose: str, data: bytes) -> bytes:
        """HMAC-SHA256 under the HSM's secret for `purpose`; destroying that
        secret unlinks every tag made with it."""
        return await self._call(self._hmac, purpose, data)

    def _hmac(self, purpose: str, data: bytes) -> bytes:
        key = self._cached_key(ObjectClass.SECRET_KEY, HMAC_KEY_PREFIX + purpose)
        return bytes(key.sign(data, mechanism=Mechanism.SHA256_HMAC))

    # -- sealing (TOTP seeds, face templates) ----------------------------------

    def _sealing_key(self, purpose: str) -> Any:
        return self._cached_key(ObjectClass.SECRET_KEY, SEALING_KEY_PREFIX + purpose)

    async def seal(self, purpose: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-GCM under the HSM's sealing key for `purpose`; nonce || ct || tag."""
        return await self._call(self._seal, purpose, plaintext, aad)

    def _seal(self, purpose: str, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(GCM_NONCE_BYTES)
        ct = self._sealing_key(purpose).encrypt(
            plaintext,
            mechanism=Mechanism.AES_GCM,
            mechanism_param=GCMParams(nonce, aad, GCM_TAG_BITS),
        )
        return nonce + bytes(ct)

    async def unseal(self, purpose: str, sealed: bytes, aad: bytes) -> bytes:
        return await self._call(self._unseal, purpose, sealed, aad)

    def _unseal(self, purpose: str, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < GCM_NONCE_BYTES + GCM_TAG_BITS // 8:
            raise KeyBlobError("sealed value too short")
        try:
            return bytes(
                self._sealing_key(purpose).decrypt(
                    sealed[GCM_NONCE_BYTES:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(sealed[:GCM_NONCE_BYTES], aad, GCM_TAG_BITS),
                )
            )
        except PKCS11Error as e:
            raise KeyBlobError("sealed value does not open (tampered or misplaced)") from e

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def _generate_pair(
        s: Any,
        algorithm: KeyAlgorithm,
        *,
        store: bool,
        private_template: dict[Attribute, Any],
        label: str | None = None,
    ) -> tuple[Any, Any]:
        private_template = {**private_template, Attribute.SIGN: True}
        if algorithm is KeyAlgorithm.ED25519:
            params = s.create_domain_parameters(
                KeyType.EC_EDWARDS,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(algorithm.curve_oid)},
                local=True,
            )
            pub, priv = params.generate_keypair(
                store=store,
                label=label,
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                private_template=private_template,
            )
        elif algorithm.is_ec:
            params = s.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(algorithm.curve_oid)},
                local=True,
            )
            pub, priv = params.generate_keypair(
                store=store,
                label=label,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                private_template=private_template,
            )
        else:
            pub, priv = s.generate_keypair(
                KeyType.RSA,
                algorithm.rsa_bits,
                store=store,
                label=label,
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                private_template=private_template,
            )
        return pub, priv


def _blob_aad(credential_id: str) -> bytes:
    return b"cloudsign/owner-key/v1\x00" + credential_id.encode()


def _public_key_info(pub: Any, algorithm: KeyAlgorithm) -> bytes:
    if algorithm is KeyAlgorithm.ED25519:
        point = bytes(pub[Attribute.EC_POINT])
        # SoftHSM2 returns the point DER-wrapped in an OCTET STRING.
        raw = asn1_core.OctetString.load(point).native if len(point) == 34 else point
        info = asn1_keys.PublicKeyInfo({"algorithm": {"algorithm": "ed25519"}, "public_key": raw})
        return bytes(info.dump())
    if algorithm.is_ec:
        return bytes(encode_ec_public_key(pub))
    rsa = asn1_keys.RSAPublicKey.load(encode_rsa_public_key(pub))
    info = asn1_keys.PublicKeyInfo(
        {"algorithm": {"algorithm": "rsa", "parameters": None}, "public_key": rsa}
    )
    return bytes(info.dump())


def _check_scheme(algorithm: KeyAlgorithm, scheme: SignatureScheme) -> None:
    if algorithm is KeyAlgorithm.ED25519:
        ok = scheme is SignatureScheme.EDDSA
    elif algorithm.is_ec:
        ok = scheme in (SignatureScheme.ECDSA, SignatureScheme.ECDSA_RAW)
    else:
        ok = scheme in (SignatureScheme.RSA_PKCS1V15, SignatureScheme.RSA_PSS)
    if not ok:
        raise UnsupportedAlgorithmError(f"{scheme.value} does not fit a {algorithm.value} key")


_PSS_HASH: Final = {
    "sha256": (Mechanism.SHA256, MGF.SHA256),
    "sha384": (Mechanism.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512, MGF.SHA512),
}


def _sign_digest(
    priv: Any, digest: bytes, hash_alg: HashAlgorithm, scheme: SignatureScheme
) -> bytes:
    if len(digest) != hash_alg.digest_size:
        raise UnsupportedAlgorithmError(
            f"a {hash_alg.name} digest is {hash_alg.digest_size} bytes, got {len(digest)}"
        )
    if scheme is SignatureScheme.ECDSA:
        return ecdsa_raw_to_der(bytes(priv.sign(digest, mechanism=Mechanism.ECDSA)))
    if scheme is SignatureScheme.ECDSA_RAW:
        return bytes(priv.sign(digest, mechanism=Mechanism.ECDSA))
    if scheme is SignatureScheme.RSA_PKCS1V15:
        return bytes(priv.sign(digest_info(hash_alg, digest), mechanism=Mechanism.RSA_PKCS))
    mech, mgf = _PSS_HASH[hash_alg.name]
    return bytes(
        priv.sign(
            digest,
            mechanism=Mechanism.RSA_PKCS_PSS,
            mechanism_param=(mech, mgf, hash_alg.digest_size),
        )
    )
