"""Long-lived service keys: the CA, OCSP, TSA, audit-log and anchoring keys.

Persistent key pairs on the token, found by label and used in place; never
readable, and wrapped only by a trusted key (`hsm_bridge.templates`): on a
ceremony token, the archive key of its backups (`hsm_bridge.backup`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from hsm_bridge.algorithms import HashAlgorithm, KeyAlgorithm, SignatureScheme
from hsm_bridge.errors import HsmConfigurationError, HsmError
from hsm_bridge.keypairs import check_scheme, generate_pair, sign_digest_with, spki_of
from hsm_bridge.session import HsmSession
from hsm_bridge.templates import EXPORTABLE_UNDER_TRUSTED

#: Digests signed in one PKCS#11 thread call at most.
MAX_SIGN_BATCH: Final = 64
_BatchKey = tuple[str, KeyAlgorithm, HashAlgorithm, SignatureScheme]
_Waiter = tuple[bytes, "asyncio.Future[bytes]"]


class HsmServiceKeys(HsmSession):
    """Generation, public halves and signatures of the service's own keys."""

    async def generate_signing_key(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        """A persistent, non-extractable key pair; returns its SPKI (DER)."""
        return await self._call(self._generate_signing_key, label, algorithm)

    def _generate_signing_key(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        s = self._session()
        with self._token_write():
            if list(
                s.get_objects({Attribute.LABEL: label, Attribute.CLASS: ObjectClass.PRIVATE_KEY})
            ):
                raise HsmConfigurationError(f"a key labelled {label!r} already exists")
            pub, _priv = generate_pair(
                s,
                algorithm,
                store=True,
                label=label,
                # Never readable; wrapped out only under a trusted key (the
                # archive key, for a backup: `hsm_bridge.templates`).
                private_template={**EXPORTABLE_UNDER_TRUSTED},
            )
        return spki_of(pub, algorithm)

    async def public_key_info(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        return await self._call(self._public_key_info_of, label, algorithm)

    def _public_key_info_of(self, label: str, algorithm: KeyAlgorithm) -> bytes:
        return spki_of(self._cached_key(ObjectClass.PUBLIC_KEY, label), algorithm)

    async def sign_digest(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        digest: bytes,
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> bytes:
        """Sign one digest. Concurrent calls for the same key made in one turn
        of the event loop go to the PKCS#11 thread as one batch (OCSP and TSA
        under load: one thread hop for many signatures instead of one each);
        each caller gets its own result or its own error."""
        loop = asyncio.get_running_loop()
        queues: dict[Any, dict[_BatchKey, list[_Waiter]]] = self.__dict__.setdefault(
            "_sign_queues", {}
        )
        pending = queues.setdefault(loop, {})
        key = (label, algorithm, hash_alg, scheme)
        batch = pending.get(key)
        if batch is None:
            batch = pending[key] = []
            loop.call_soon(self._flush_signs, loop, pending, key)
        waiter: asyncio.Future[bytes] = loop.create_future()
        batch.append((digest, waiter))
        return await waiter

    def _flush_signs(
        self,
        loop: asyncio.AbstractEventLoop,
        pending: dict[_BatchKey, list[_Waiter]],
        key: _BatchKey,
    ) -> None:
        batch = pending.pop(key)
        for start in range(0, len(batch), MAX_SIGN_BATCH):
            chunk = batch[start : start + MAX_SIGN_BATCH]
            task = loop.create_task(self._sign_chunk(key, chunk))
            self._sign_tasks.add(task)
            task.add_done_callback(self._sign_tasks.discard)

    @property
    def _sign_tasks(self) -> set[asyncio.Task[None]]:
        tasks: set[asyncio.Task[None]] = self.__dict__.setdefault("_sign_task_set", set())
        return tasks

    async def _sign_chunk(self, key: _BatchKey, chunk: list[_Waiter]) -> None:
        label, algorithm, hash_alg, scheme = key
        try:
            results = await self._call(
                self._sign_digests_named, label, algorithm, [d for d, _ in chunk], hash_alg, scheme
            )
        except BaseException as e:  # the HSM is gone: every caller hears it
            for _, waiter in chunk:
                if not waiter.done():
                    waiter.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for (_, waiter), result in zip(chunk, results, strict=True):
            if waiter.done():
                continue
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

    def _sign_digests_named(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        digests: list[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes | Exception]:
        check_scheme(algorithm, scheme)
        key = self._cached_key(ObjectClass.PRIVATE_KEY, label)
        out: list[bytes | Exception] = []
        for digest in digests:
            try:
                out.append(sign_digest_with(key, digest, hash_alg, scheme))
            except (HsmError, PKCS11Error, ValueError) as e:
                out.append(e)
        return out

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
