"""Running nft scripts in-process through libnftables (the library behind the `nft` command).

Why not `nft -f` for every transaction: a fresh `nft` process must first read the whole ruleset's
chains and sets back from the kernel to evaluate a script; with 1,000 Services that alone is most of
the ~24 ms a one-Service partial sync costs. One long-lived context keeps that cache and only refetches
when the kernel's ruleset generation changed behind its back, so the same transaction takes ~6 ms.
Debian's python3-nftables does the same through ctypes, but is built for the system Python only; the
few calls needed are bound here. libnftables1 is a dependency of the nftables package, so it is present
wherever `nft` is.
"""
from __future__ import annotations

import ctypes
import threading


class LibNftError(Exception):
    pass


class Context:
    """One libnftables context; not for concurrent use, so calls are serialised."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            raise LibNftError("libnftables is not installed (Debian package libnftables1)") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)  # 0: NFT_CTX_DEFAULT
        if not self._ctx:
            raise LibNftError("cannot create a libnftables context")
        # Buffered, so that messages come back to us instead of going to this process's stdout/stderr.
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        self._lock = threading.Lock()

    def run(self, script: str) -> None:
        """Apply a script as one transaction (all or nothing); LibNftError with nft's message on failure."""
        with self._lock:
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            # Read both buffers every time: reading rewinds them, so nothing piles up or leaks into the next call.
            self._lib.nft_ctx_get_output_buffer(self._ctx)
            error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace").strip()
        if rc != 0:
            raise LibNftError(error[:2000] or f"nft failed with status {rc}")


_context: Context | None = None
_context_lock = threading.Lock()


def context() -> Context:
    """The process's context, made on first use."""
    global _context
    with _context_lock:
        if _context is None:
            _context = Context()
        return _context
