"""Key templates of the long-lived keys, and the one attribute python-pkcs11
cannot pack by itself: an attribute *array* (`CKA_UNWRAP_TEMPLATE`).

**Backup-exportable keys.** Every long-lived key (master, sealing and HMAC
keys, CA, OCSP, TSA, anchoring keys) is made `CKA_EXTRACTABLE` *and*
`CKA_WRAP_WITH_TRUSTED` (`EXPORTABLE_UNDER_TRUSTED`): only a key carrying
`CKA_TRUSTED` may wrap it, and only the SO may set `CKA_TRUSTED` (the SO PIN
is made and forgotten in one child process, see `hsm_bridge.provision`). The
trusted keys of a token are the master key and, on a token made by a
ceremony, the archive key (`hsm_bridge.backup`), which may wrap and never
unwrap. So the one way out of the HSM is under the archive key, whose value
exists only as 3-of-5 shares (`hsm_bridge.shares`). Attempts with a key of
one's own fail with `CKR_KEY_NOT_WRAPPABLE` (tested).

**The master key's unwrap template.** The master key wraps too (owner keys,
once, at creation), so a holder of the user PIN could wrap a service key
under it, or take an owner's blob after the owner's password opened it,
and unwrap either as an *extractable, non-sensitive* copy to read. The
master key therefore carries `CKA_UNWRAP_TEMPLATE` = `MASTER_UNWRAP_TEMPLATE`
(not extractable, sensitive, session only): SoftHSM2 (2.6.1, checked in its
`C_UnwrapKey`) refuses with `CKR_TEMPLATE_INCONSISTENT` any unwrap whose
template does not state exactly these values. Whatever the master key
unwraps can sign, and nothing else.

python-pkcs11 packs every attribute into bytes; an array attribute is a
`CK_ATTRIBUTE[]` whose entries point at their values. `TemplateMapper`
builds that array with ctypes and keeps the buffers it points into alive as
long as the mapper (python-pkcs11 copies the array itself, not what it
points at). Only the provisioning and restore children use it: the service
never creates a key with a template attribute.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Any, Final

from pkcs11 import Attribute
from pkcs11.attributes import AttributeMapper

__all__ = [
    "EXPORTABLE_UNDER_TRUSTED",
    "MASTER_UNWRAP_TEMPLATE",
    "NO_CAPABILITIES",
    "RETIRED_MASTER_UNWRAP_TEMPLATE",
    "TemplateMapper",
]

#: A long-lived key that may leave the HSM only wrapped by a trusted key.
EXPORTABLE_UNDER_TRUSTED: Final = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: True,
    Attribute.WRAP_WITH_TRUSTED: True,
    Attribute.PRIVATE: True,
}

#: Every capability off: secret-key templates start here and turn on the
#: one or two they need.
NO_CAPABILITIES: Final = {
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}

#: What anything the master key unwraps must be: usable, never readable,
#: never wrappable, gone with the session.
MASTER_UNWRAP_TEMPLATE: Final = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
}

#: What a retired master key (after a rotation) may unwrap: an owner key on
#: its way to the new master, so extractable, but only under a trusted key
#: (the new master, whose own template then holds), never readable, never
#: stored.
RETIRED_MASTER_UNWRAP_TEMPLATE: Final = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: True,
    Attribute.WRAP_WITH_TRUSTED: True,
}

_ARRAY_ATTRIBUTES: Final = (Attribute.WRAP_TEMPLATE, Attribute.UNWRAP_TEMPLATE)


class _CkAttribute(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_ulong),
        ("pValue", ctypes.c_void_p),
        ("ulValueLen", ctypes.c_ulong),
    ]


class TemplateMapper(AttributeMapper):
    """python-pkcs11's attribute mapper, plus `CKA_WRAP_TEMPLATE` and
    `CKA_UNWRAP_TEMPLATE` given as a dict of attributes. Writing only: a
    template attribute is never read back through it."""

    def __init__(self) -> None:
        super().__init__()
        self._alive: list[Any] = []
        for attribute in _ARRAY_ATTRIBUTES:
            self.register_handler(attribute, self._pack_template, self._unpack_template)

    def _pack_template(self, template: Mapping[Attribute, Any]) -> bytes:
        entries = (_CkAttribute * len(template))()
        for entry, (attribute, value) in zip(entries, template.items(), strict=True):
            if attribute in _ARRAY_ATTRIBUTES:
                raise ValueError("a template inside a template is not supported")
            packed = self.pack_attribute(attribute, value)
            buffer = ctypes.create_string_buffer(packed, len(packed))
            self._alive.append(buffer)
            entry.type = int(attribute)
            entry.pValue = ctypes.cast(buffer, ctypes.c_void_p)
            entry.ulValueLen = len(packed)
        self._alive.append(entries)
        return bytes(memoryview(entries).cast("B"))

    @staticmethod
    def _unpack_template(value: bytes) -> bytes:
        raise NotImplementedError("template attributes are written, never read back")
