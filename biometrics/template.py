"""The enrolled face template: biometric data with a deliberately tiny surface.

Owns :class:`FaceTemplate` and its versioned byte format. The vector never appears in
``repr``/``str`` and has no public accessor; the server stores only the encrypted
``to_bytes()`` output (encryption with the HSM key is the server's job).

Format v1 (little-endian): magic ``b"CSFT"``, u8 version=1, u8 model id (1 = dlib
ResNet v1 via face_recognition), u8 image count, u8 reserved, u16 dimension (128),
``dimension`` float64 values, u32 CRC-32 of everything before it.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

import numpy as np
import numpy.typing as npt

from biometrics.errors import TemplateError, TemplateVersionError

FORMAT_VERSION: Final = 1
_MAGIC: Final = b"CSFT"
_MODEL_DLIB_RESNET_V1: Final = 1
_DIM: Final = 128
_HEAD = struct.Struct("<4sBBBBH")
_CRC = struct.Struct("<I")

Vector = npt.NDArray[np.float64]


class FaceTemplate:
    """Reference face template (mean 128-d embedding of the enrolment images)."""

    __slots__ = ("_images", "_vector")

    def __init__(self, vector: npt.ArrayLike, images: int) -> None:
        vec = np.array(vector, dtype=np.float64).reshape(-1)
        if vec.shape != (_DIM,) or not np.all(np.isfinite(vec)):
            raise TemplateError("a template is 128 finite values")
        if not 1 <= images <= 255:
            raise TemplateError("image count out of range")
        vec.setflags(write=False)
        self._vector = vec
        self._images = images

    @property
    def images(self) -> int:
        """How many enrolment images were aggregated."""
        return self._images

    def __repr__(self) -> str:
        return f"<FaceTemplate v{FORMAT_VERSION} images={self._images} vector=<redacted>>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaceTemplate):
            return NotImplemented
        return self._images == other._images and bool(np.array_equal(self._vector, other._vector))

    def __hash__(self) -> int:
        return hash((self._images, self._vector.tobytes()))

    def __getstate__(self) -> tuple[bytes]:
        # Pickled only to reach a worker process of FaceWorkerPool.
        return (self.to_bytes(),)

    def __setstate__(self, state: tuple[bytes]) -> None:
        other = FaceTemplate.from_bytes(state[0])
        self._vector = other._vector
        self._images = other._images

    def distance(self, embedding: Vector) -> float:
        """Euclidean distance between this template and a probe embedding."""
        return float(np.linalg.norm(self._vector - embedding))

    def distance_to(self, other: FaceTemplate) -> float:
        """Euclidean distance between two templates (is a replacement the same face?)."""
        return float(np.linalg.norm(self._vector - other._vector))

    def to_bytes(self) -> bytes:
        head = _HEAD.pack(_MAGIC, FORMAT_VERSION, _MODEL_DLIB_RESNET_V1, self._images, 0, _DIM)
        body = head + self._vector.astype("<f8").tobytes()
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> FaceTemplate:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TemplateError("template must be bytes")
        data = bytes(data)
        if len(data) < _HEAD.size or data[:4] != _MAGIC:
            raise TemplateError("not a face template")
        _magic, version, model, images, _reserved, dim = _HEAD.unpack_from(data)
        if version != FORMAT_VERSION:
            raise TemplateVersionError(f"unsupported template version {version}")
        if model != _MODEL_DLIB_RESNET_V1 or dim != _DIM:
            raise TemplateError("template from an unknown model")
        expected = _HEAD.size + 8 * _DIM + _CRC.size
        if len(data) != expected:
            raise TemplateError("template has the wrong length")
        body, (crc,) = data[: -_CRC.size], _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(body) != crc:
            raise TemplateError("template checksum mismatch")
        vec = np.frombuffer(body, dtype="<f8", offset=_HEAD.size, count=_DIM)
        return cls(vec, images)
