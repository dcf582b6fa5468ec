"""Gate REST signing when cold: the Rust signer (``_core.PrefixedHmacSha512.gate_rest_lines``)
against the same header lines built with CPython's SHA-512 and precomputed HMAC states (the
previous implementation), each call after 3 ms of other work and a 4 MB memory sweep, as on the
order path where one order follows a market frame every few ms.

Run: ``.venv/bin/python benchmarks/diagnostics/sign_cold.py`` (prints p50/p90 per variant, twice).
"""

from __future__ import annotations

import time
from binascii import hexlify

import numpy as np
from cexarb import _core

try:  # what the previous implementation used: CPython's own SHA-512, not OpenSSL
    from _sha512 import sha512  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from hashlib import sha512

KEY = b"p5-gate-secret"
PREFIX = b"POST\n/api/v4/spot/orders\n\n"
BODY = (
    b'{"text":"t-123","currency_pair":"BTC_USDT","type":"limit","account":"spot","side":"buy",'
    b'"amount":"0.001","price":"61000.1","time_in_force":"ioc"}'
)
TS, KEY_LINE = b"1700000000", b"KEY: k\r\n"


def python_signer():  # type: ignore[no-untyped-def]
    key = KEY.ljust(128, b"\0")
    inner0 = sha512(key.translate(bytes(x ^ 0x36 for x in range(256))))
    outer0 = sha512(key.translate(bytes(x ^ 0x5C for x in range(256))))
    inner0.update(PREFIX)

    def lines(body: bytes) -> bytes:
        inner = inner0.copy()
        inner.update(b"%s\n%s" % (hexlify(sha512(body).digest()), TS))
        outer = outer0.copy()
        outer.update(inner.digest())
        sign = hexlify(outer.digest())
        return b"%sTimestamp: %s\r\nSIGN: %s\r\nContent-Type: application/json\r\n" % (KEY_LINE, TS, sign)

    return lines


def main(calls: int = 400) -> None:
    mac = _core.PrefixedHmacSha512(KEY, PREFIX)
    variants = {"python": python_signer(), "rust": lambda body: mac.gate_rest_lines(body, TS, KEY_LINE, b"")}
    assert variants["python"](BODY) == variants["rust"](BODY)
    pc = time.perf_counter_ns
    for _ in range(2):
        for name, sign in variants.items():
            lat = []
            for _ in range(calls):
                t = pc()
                while pc() - t < 3_000_000:
                    pass
                sweep = bytearray(4_000_000)
                sweep[::4096] = b"x" * len(sweep[::4096])
                t0 = pc()
                sign(BODY)
                lat.append(pc() - t0)
            a = np.asarray(lat) / 1e3
            print(f"{name:6s} cold p50 {np.percentile(a, 50):.1f} us, p90 {np.percentile(a, 90):.1f} us")


if __name__ == "__main__":
    main()
