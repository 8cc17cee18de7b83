"""Ed25519 signing (RFC 8032, section 5.1) in plain Python.

Ollama authenticates to ollama.com by signing each token request with the user's
ed25519 key. The `cryptography` package is not a dependency of this project, and the
only operations needed are "derive the public key" and "sign a short message", which
RFC 8032 specifies completely in a page of arithmetic; this module is that page. It is
checked against the RFC's test vectors and against OpenSSH/OpenSSL in the tests.

Not constant-time: Python integers leak timing. The key signs a few requests per pull
from a local process, where that leak is not observable by the remote party in any
useful way; prefer a vetted library if one becomes a dependency.
"""

from __future__ import annotations

import hashlib

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

Point = tuple[int, int, int, int]
"""Extended homogeneous coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, xy = T/Z."""


def _inverse(value: int) -> int:
    return pow(value, _P - 2, _P)


def _recover_x(y: int, sign: int) -> int:
    """The x coordinate for `y` with the given parity (RFC 8032 5.1.3)."""
    x2 = (y * y - 1) * _inverse(_D * y * y + 1) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        raise ValueError("not a point on the curve")
    if x % 2 != sign:
        x = _P - x
    return x


_BASE_Y = 4 * _inverse(5) % _P
_BASE_X = _recover_x(_BASE_Y, 0)
_BASE: Point = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % _P)
_IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    """Point addition on the twisted Edwards curve (RFC 8032 5.1.4)."""
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _multiply(scalar: int, point: Point) -> Point:
    result = _IDENTITY
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _encode(point: Point) -> bytes:
    z_inv = _inverse(point[2])
    x, y = point[0] * z_inv % _P, point[1] * z_inv % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(data: bytes) -> Point:
    if len(data) != 32:
        raise ValueError("an encoded point is 32 bytes")
    value = int.from_bytes(data, "little")
    y, sign = value & ((1 << 255) - 1), value >> 255
    if y >= _P:
        raise ValueError("not a point on the curve")
    x = _recover_x(y, sign)
    return (x, y, 1, x * y % _P)


def _equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _expand(seed: bytes) -> tuple[int, bytes]:
    """The secret scalar and the nonce prefix derived from a 32-byte seed."""
    if len(seed) != 32:
        raise ValueError("an ed25519 seed is 32 bytes")
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:]


def _hash_scalar(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % _L


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key for a 32-byte private seed."""
    scalar, _prefix = _expand(seed)
    return _encode(_multiply(scalar, _BASE))


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte signature of `message` (deterministic, as RFC 8032 requires)."""
    scalar, prefix = _expand(seed)
    public = _encode(_multiply(scalar, _BASE))
    nonce = _hash_scalar(prefix, message)
    encoded_r = _encode(_multiply(nonce, _BASE))
    challenge = _hash_scalar(encoded_r, public, message)
    s = (nonce + challenge * scalar) % _L
    return encoded_r + s.to_bytes(32, "little")


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is valid for `message` under `public` (used by tests)."""
    if len(signature) != 64:
        return False
    try:
        point_a, point_r = _decode(public), _decode(signature[:32])
    except ValueError:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    challenge = _hash_scalar(signature[:32], public, message)
    return _equal(_multiply(s, _BASE), _add(point_r, _multiply(challenge, point_a)))
