"""Keep freed memory in the process heap (glibc) instead of handing it back to the system.

By default glibc serves every allocation above its mmap threshold (128 kB, rising adaptively to at most 32 MB)
with a fresh mmap and unmaps it when it is freed, so a CPU training step page-faults through all of its large
activations again on every step and the kernel zeroes each page: about 5% of a full-size pre-training step
on CPU, and a quarter of one with explicit attention matrices. Preprocessing workers pay the same on every
file. Keeping freed blocks in the heap lets the next step (or file) reuse them; the peak memory is unchanged.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def glibc():
    """The C library when it is glibc (it has mallopt and malloc_trim), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c'))
        libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def keep_freed_memory():
    """Serve all allocations from the heap and never trim it; returns whether it applied (glibc only)."""
    libc = glibc()
    return libc is not None and bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
