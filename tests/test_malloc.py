"""util.malloc.keep_freed_memory: a freed 200 MB block stays resident for reuse instead of going back to the
system, and the next allocation of that size reuses it without page faults."""
import subprocess
import sys

import pytest

from conftest import ROOT
from util.malloc import glibc

PROBE = """
import resource, sys
from pathlib import Path
from util.malloc import keep_freed_memory
def rss_mb():
    line = next(l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS:'))
    return int(line.split()[1]) / 1024
if sys.argv[1] == 'keep':
    assert keep_freed_memory()
block = bytearray(200 << 20)  # zero-filled: every page touched
del block
after_free = rss_mb()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(200 << 20)
print(after_free, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def probe(mode):
    proc = subprocess.run([sys.executable, '-c', PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    rss, faults = proc.stdout.split()
    return float(rss), int(faults)


@pytest.mark.skipif(glibc() is None, reason='keep_freed_memory applies to glibc only')
def test_freed_memory_is_kept_and_reused():
    kept_rss, kept_faults = probe('keep')
    default_rss, default_faults = probe('default')
    assert kept_rss > default_rss + 150  # the freed 200 MB stayed resident
    assert default_faults > 200 * 256 * 0.9  # glibc's default: a fresh mmap, one fault per 4 kB page
    assert kept_faults < default_faults / 10
