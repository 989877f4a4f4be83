#!/usr/bin/env python3
"""Helpers for bench/link-order.sh: which pages of a binary were used, and
which symbols sit on them.

  link_order.py evict FILE             drop FILE's pages from the page cache
  link_order.py cached FILE OUT        write the cached page numbers (mincore)
  link_order.py mapped PID FILE OUT    write FILE's pages PID has mapped
                                       (/proc/PID/pagemap)
  link_order.py order BIN MAP OUT PAGES...
                                       write the symbols on the pages of each
                                       PAGES file, earlier files first

With read-ahead off on the file's block device and the file evicted first,
the page cache after a run holds exactly the pages the run touched (plus the
ELF headers), so `cached` is a profile of the code that ran. See
build/link_order.rs for why the order matters.
"""
import ctypes
import os
import re
import struct
import subprocess
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                      ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    left = cached(path)
    if left:
        sys.exit(f"{path}: {len(left)} pages still cached after eviction "
                 "(is it still running?)")


def cached(path):
    """Page numbers of `path` present in the page cache (mincore(2))."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            sys.exit(f"mmap {path}: {os.strerror(ctypes.get_errno())}")
        n = (size + PAGE - 1) // PAGE
        vec = (ctypes.c_ubyte * n)()
        if libc.mincore(addr, size, vec) != 0:
            sys.exit(f"mincore {path}: {os.strerror(ctypes.get_errno())}")
        libc.munmap(addr, size)
        return [i for i in range(n) if vec[i] & 1]
    finally:
        os.close(fd)


def mapped(pid, path):
    """Page numbers of `path` that process `pid` has in its page tables."""
    ino = os.stat(path).st_ino
    pages = set()
    with open(f"/proc/{pid}/maps") as maps, \
            open(f"/proc/{pid}/pagemap", "rb") as pm:
        for line in maps:
            f = line.split()
            if len(f) < 6 or int(f[4]) != ino:
                continue
            start, end = (int(x, 16) for x in f[0].split("-"))
            off = int(f[2], 16)
            pm.seek(start // PAGE * 8)
            data = pm.read((end - start) // PAGE * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", data)):
                if entry >> 63:  # bit 63: page present
                    pages.add(off // PAGE + i)
    return sorted(pages)


def segments(binary):
    """(file offset, vaddr, file size) of each PT_LOAD segment."""
    out = subprocess.run(["readelf", "-lW", binary], check=True,
                         capture_output=True, text=True).stdout
    segs = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            segs.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
    return segs


def sections(mapfile):
    """(vaddr, size, symbol) of every input section in an lld map (written
    with --no-demangle), named by the first symbol it defines."""
    head = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s(.*)$")
    out, pending = [], None
    with open(mapfile) as f:
        for line in f:
            m = head.match(line)
            if not m:
                continue
            addr, size, rest = int(m.group(1), 16), int(m.group(2), 16), m.group(3)
            indent = len(rest) - len(rest.lstrip(" "))
            if indent == 0:  # an output section
                pending = None
            elif ":(" in rest:  # an input section
                pending = (addr, size)
            elif pending and indent >= 16:  # a symbol: the first names it
                out.append((pending[0], pending[1], rest.strip()))
                pending = None
    return out


def order(binary, mapfile, outfile, phases):
    segs = segments(binary)

    def pages_of(addr, size):
        for off, va, fsz in segs:
            if va <= addr < va + fsz:
                first = (addr - va + off) // PAGE
                last = (addr - va + off + max(size, 1) - 1) // PAGE
                return range(first, last + 1)
        return range(0)

    secs = [(a, s, n) for a, s, n in sections(mapfile) if s > 0]
    seen, lines = set(), []
    for phase in phases:
        with open(phase) as f:
            touched = {int(x) for x in f.read().split()}
        hot = [(a, n) for a, s, n in secs
               if n not in seen and any(p in touched for p in pages_of(a, s))]
        hot.sort()
        lines.append(f"# {os.path.basename(phase)}: {len(hot)} symbols")
        for _, n in hot:
            seen.add(n)
            lines.append(n)
    # lld reads one symbol per line and takes no comments: keep the phase
    # headers out of the file itself, print them instead.
    with open(outfile, "w") as f:
        f.writelines(n + "\n" for n in lines if not n.startswith("# "))
    for n in lines:
        if n.startswith("# "):
            print(n[2:])


def write_pages(pages, out):
    with open(out, "w") as f:
        f.write("\n".join(map(str, pages)) + "\n")
    print(f"{out}: {len(pages)} pages ({len(pages) * PAGE // 1024} KiB)")


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "evict" and len(argv) == 3:
        evict(argv[2])
    elif cmd == "cached" and len(argv) == 4:
        write_pages(cached(argv[2]), argv[3])
    elif cmd == "mapped" and len(argv) == 5:
        write_pages(mapped(int(argv[2]), argv[3]), argv[4])
    elif cmd == "order" and len(argv) >= 6:
        order(argv[2], argv[3], argv[4], argv[5:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
