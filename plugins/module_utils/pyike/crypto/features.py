"""What the installed ``cryptography`` (and the OpenSSL beneath it) can do.

Targets run distribution packages (Debian 12 ships cryptography 38), so optional
algorithms are probed once, never assumed.
"""

from __future__ import annotations

import functools
import warnings

from .modp_groups import GENERATOR, MODP_2048_PRIME


@functools.cache
def is_before_42() -> bool:
    """cryptography before 42: every AEAD call builds a new OpenSSL context (19 us against 1.6 us per
    1400-octet packet with 51), and X25519/X448 ``public_key()`` is a slow DER round trip."""
    import cryptography

    major = cryptography.__version__.split(".")[0]
    return major.isdigit() and int(major) < 42


@functools.cache
def has_x25519() -> bool:
    try:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        X25519PrivateKey.generate()
    except Exception:  # UnsupportedAlgorithm, or a build without the module
        return False
    return True


@functools.cache
def has_x448() -> bool:
    try:
        from cryptography.hazmat.primitives.asymmetric.x448 import X448PrivateKey

        X448PrivateKey.generate()
    except Exception:
        return False
    return True


@functools.cache
def has_mlkem(level: int = 768) -> bool:
    """ML-KEM-768 (FIPS 203) arrived in cryptography 47, ML-KEM-1024 later; older releases lack both."""
    try:
        from cryptography.hazmat.primitives.asymmetric import mlkem

        getattr(mlkem, f"MLKEM{level}PrivateKey").generate()
    except Exception:
        return False
    return True


@functools.cache
def has_ffdh() -> bool:
    """Finite-field DH is deprecated in recent cryptography releases and may disappear."""
    try:
        from cryptography.hazmat.primitives.asymmetric import dh

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dh.DHParameterNumbers(MODP_2048_PRIME, GENERATOR).parameters()
    except Exception:
        return False
    return True


@functools.cache
def has_chacha20_poly1305() -> bool:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        ChaCha20Poly1305(bytes(32))
    except Exception:
        return False
    return True
