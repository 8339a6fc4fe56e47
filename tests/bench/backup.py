#!/usr/bin/env python3
"""Benchmark of the backup engine against tar | zstd (DESIGN.md §7). Not run by CTest.

    tests/bench/backup.py [--size 1G] [--dir /var/tmp/ordinal-bench] [--keep] [--runs 2]
                          [--threads N ...] [--build DIR]

Generates a deterministic dataset (same seed, same bytes) under <dir>/root/bench/db/0/data
(the node layout): database-like files of 8 KiB pages (some all-zero pages, rows of text and
numbers), many small files in nested directories, incompressible files and sparse files. Then,
on that data, in one run:

  backup:  ordinal (the `ordinal-backup backup` command when it exists, else the engine driver
           build/tests/engine_bench)   vs   tar -cf - DIR | zstd -3 -T0 > file
  restore: ordinal restore (engine driver: extracts into staging, checks every entry on disk,
           syncfs) and ordinal-backup restore (the command: the same, then swaps)
           vs   zstd -dc file | tar -xf - && sync   (and vs the same without sync)

and prints wall-time ratios, the stored-size ratio and peak RSS (getrusage of each child).
Targets: backup <= 0.8x, stored <= 1.02x, RSS <= 64 MiB; restore <= 1.0x. For the backups the
dataset is in the page cache and nothing is left to write back from the previous command;
the restores go to a fresh ext4 on a loop device (--restore-fs) and start from a flushed,
dropped page cache with only the archives read back in (see the comment in main). Each
command runs --runs times (best time kept). Needs root (mount, drop_caches).
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    s = s.strip().upper().rstrip("IB")
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def gen_dataset(root, size, seed=20261123):
    """Deterministic dataset of about `size` bytes of content."""
    rnd = random.Random(seed)
    os.makedirs(root)
    words = [("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 10))))
             for _ in range(2000)]

    def text(n):
        out = []
        total = 0
        while total < n:
            w = rnd.choice(words)
            if rnd.random() < 0.2:
                w = str(rnd.randint(0, 10**9))
            out.append(w)
            total += len(w) + 1
        return (" ".join(out)).encode()[:n]

    # database-like: 8 KiB pages, 12% all-zero, the rest rows from a pool of page bodies
    # with a unique page header (so nothing dedups trivially).
    page = 8192
    pool = [text(page - 16) for _ in range(512)]
    db_bytes = int(size * 0.55)
    nfiles = 4
    per = db_bytes // nfiles // page * page
    os.makedirs(os.path.join(root, "base", "16384"))
    for i in range(nfiles):
        with open(os.path.join(root, "base", "16384", "%d" % (24576 + i)), "wb") as f:
            chunk = []
            for p in range(per // page):
                if rnd.random() < 0.12:
                    chunk.append(bytes(page))
                else:
                    hdr = (p.to_bytes(8, "little") + rnd.getrandbits(64).to_bytes(8, "little"))
                    body = bytearray(pool[rnd.randrange(len(pool))])
                    # a few changed bytes per page, like updated rows
                    for _ in range(8):
                        body[rnd.randrange(len(body))] = rnd.randrange(256)
                    chunk.append(hdr + bytes(body))
                if len(chunk) == 256:
                    f.write(b"".join(chunk))
                    chunk = []
            f.write(b"".join(chunk))

    # many small files: text/JSON-like, 100 B .. 16 KiB, in nested directories.
    small_bytes = int(size * 0.15)
    done = 0
    n = 0
    while done < small_bytes:
        d = os.path.join(root, "small", "d%02d" % (n % 50), "e%02d" % (n // 50 % 20))
        os.makedirs(d, exist_ok=True)
        ln = min(int(rnd.expovariate(1 / 4000)) + 100, 16384)
        with open(os.path.join(d, "f%06d.json" % n), "wb") as f:
            f.write(b'{"id": %d, "body": "' % n + text(ln) + b'"}\n')
        done += ln
        n += 1

    # incompressible: media, encrypted or already-compressed data.
    inc_bytes = int(size * 0.15)
    os.makedirs(os.path.join(root, "blobs"))
    for i in range(3):
        with open(os.path.join(root, "blobs", "blob%d.bin" % i), "wb") as f:
            left = inc_bytes // 3
            while left > 0:
                k = min(left, 1 << 20)
                f.write(rnd.randbytes(k))
                left -= k

    # sparse files: preallocated logs/tables with holes; logical size 15% of the total, data
    # about a tenth of it.
    sp_bytes = int(size * 0.15)
    os.makedirs(os.path.join(root, "sparse"))
    for i in range(3):
        path = os.path.join(root, "sparse", "table%d.dat" % i)
        logical = sp_bytes // 3
        with open(path, "wb") as f:
            f.truncate(logical)
            for _ in range(20):
                off = rnd.randrange(0, max(1, logical - (1 << 20))) // 4096 * 4096
                f.seek(off)
                f.write(text(rnd.randint(4096, logical // 200 + 4096)))
    return n


def run(cmd, shell=False, cwd=None):
    """Runs cmd; returns (seconds, peak RSS in KiB, stdout, CPU seconds user+sys)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, shell=shell, cwd=cwd, stdout=subprocess.PIPE,
                         executable="/bin/bash" if shell else None)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("command failed (%s): %s" % (status, cmd))
    return dt, ru.ru_maxrss, out.decode(), ru.ru_utime + ru.ru_stime


def warm(path):
    subprocess.run("tar -cf - -C '%s' . | cat > /dev/null" % path, shell=True, check=True)


def restore_fs(base, kind):
    """Mounts a fresh filesystem of that kind (8 GiB sparse image, loop device) for the
    restores and returns its mount point; "none" restores under base."""
    if kind == "none":
        return base
    img, mnt = os.path.join(base, "restore.img"), os.path.join(base, "mnt")
    restore_fs_done(base, mnt, kind)
    with open(img, "wb") as f:
        f.truncate(8 << 30)
    subprocess.run(["mkfs." + kind, "-q", "-f" if kind == "xfs" else "-F", img], check=True)
    os.makedirs(mnt, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
    return mnt


def restore_fs_done(base, mnt, kind):
    if kind == "none":
        return
    if os.path.ismount(mnt):
        subprocess.run(["umount", "-d", mnt], check=True)  # -d: detaches the loop device too
    img = os.path.join(base, "restore.img")
    if os.path.exists(img):
        os.unlink(img)


def best(n, fn):
    res = [fn() for _ in range(n)]
    return min(res, key=lambda r: r[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1G")
    ap.add_argument("--dir", default="/var/tmp/ordinal-bench")
    ap.add_argument("--build", default=os.environ.get("ORDINAL_BUILD_DIR", os.path.join(SRC, "build")))
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="*", default=[0])
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--restore-fs", default="ext4", choices=["ext4", "xfs", "none"],
                    help="filesystem made on a loop device for the restores (none: under --dir)")
    a = ap.parse_args()

    size = parse_size(a.size)
    base = a.dir
    vol = os.path.join(base, "root", "bench", "db", "0", "data")
    stamp = os.path.join(base, "dataset-%d" % size)
    if not os.path.exists(stamp):
        shutil.rmtree(base, ignore_errors=True)
        t0 = time.monotonic()
        n = gen_dataset(vol, size)
        open(stamp, "w").write("%d small files\n" % n)
        print("dataset: %s generated in %.1fs" % (a.size, time.monotonic() - t0))
    du = subprocess.run(["du", "-sb", "--apparent-size", vol], capture_output=True, text=True).stdout.split()[0]
    du_alloc = subprocess.run(["du", "-sk", vol], capture_output=True, text=True).stdout.split()[0]
    print("dataset: %s, %d bytes apparent, %d KiB allocated" % (vol, int(du), int(du_alloc)))

    bench = os.path.join(a.build, "tests", "engine_bench")
    if not os.access(bench, os.X_OK):
        sys.exit("build the tree first: %s missing" % bench)
    out = os.path.join(base, "out")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    ref = os.path.join(out, "ref.tar.zst")
    obj = os.path.join(out, "obj.tar.zst")

    # Backups, interleaved (reference, then each thread setting) so that a busy machine
    # hurts both sides alike; the best of --runs is kept.
    cli = os.path.join(a.build, "bin", "ordinal-backup")
    use_cli = subprocess.run([cli, "backup", "--help"], capture_output=True).returncode == 0
    repo = os.path.join(out, "repo")
    root = os.path.join(base, "root")
    warm(vol)
    ref_runs, our_runs, cli_runs = [], {th: [] for th in a.threads}, []
    def synced_run(*args, **kw):
        # nobody inherits the previous command's writeback (the page cache stays warm)
        subprocess.run(["sync"], check=True)
        return run(*args, **kw)
    for _ in range(a.runs):
        ref_runs.append(synced_run("tar -cf - -C '%s' . | zstd -q -%d -T0 > '%s'" % (vol, a.level, ref), shell=True))
        for th in a.threads:
            our_runs[th].append(synced_run([bench, "backup", vol, obj, "--level", str(a.level), "--threads", str(th)]))
        if use_cli:
            shutil.rmtree(repo, ignore_errors=True)
            cli_runs.append(synced_run([cli, "backup", "--root", root, "--repo", repo, "--statefulset", "bench/db",
                                 "--level", str(a.level), "--json"]))
    pick = lambda rs: min(rs, key=lambda r: r[0])
    ref_b = pick(ref_runs)
    results = {th: pick(our_runs[th]) for th in a.threads}
    ref_size = os.path.getsize(ref)
    th0 = a.threads[0]
    sha, stored, bytes_in, files = results[th0][2].split()[:4]
    obj_size = os.path.getsize(obj)

    # Restores, interleaved the same way, onto a fresh journaled ext4 (a node's data disk;
    # see restore_fs). Each timed command starts from the same state: the previous targets
    # removed, everything flushed (sync), the page cache dropped and the archives read back in.
    # Without that, whichever side runs after a removal of 40,000 files pays for it (ext4
    # without a journal, like this machine's root, scans recently freed inodes on every
    # create), and each side pays for the writeback of the one before.
    mnt = restore_fs(base, a.restore_fs)
    rdir = os.path.join(mnt, "restore-ref")
    sdir = os.path.join(mnt, "staging")
    croot = os.path.join(mnt, "root")
    inputs = [ref, obj] + [os.path.join(d, f) for d, _, fs in os.walk(repo) for f in fs]
    def prep():
        for d in (rdir, sdir, croot):
            shutil.rmtree(d, ignore_errors=True)
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        subprocess.run(["cat"] + inputs, stdout=subprocess.DEVNULL, check=True)
    def ref_restore(then_sync=False):
        prep()
        os.makedirs(rdir)
        return run("zstd -dc '%s' | tar -xf - -C '%s'%s" % (ref, rdir, " && sync" if then_sync else ""),
                   shell=True)
    def our_restore():
        prep()
        return run([bench, "restore", obj, sdir, sha, stored, bytes_in, files])
    def cli_restore():
        prep()
        os.makedirs(os.path.join(croot, "bench", "db", "0", "data"))
        return run([cli, "restore", "--root", croot, "--repo", repo, "--statefulset", "bench/db", "--json"])
    rr, rrs, orr, crr = [], [], [], []
    try:
        for _ in range(a.runs):
            rr.append(ref_restore())
            orr.append(our_restore())
            if use_cli:
                rrs.append(ref_restore(then_sync=True))
                crr.append(cli_restore())
        ref_r, our_r = pick(rr), pick(orr)
    finally:
        for d in (rdir, sdir, croot):
            shutil.rmtree(d, ignore_errors=True)
        restore_fs_done(base, mnt, a.restore_fs)
    ver = run([bench, "verify", obj, sha, stored, bytes_in, files])
    load = open("/proc/loadavg").read().split()[0]

    print()
    print("best of %d runs; load average at the end %s (CPU s = user+sys, all processes)" % (a.runs, load))
    print("%-34s %8s %7s %8s %7s %9s" % ("", "wall s", "ratio", "CPU s", "ratio", "peak RSS"))
    def line(label, r, base):
        print("%-34s %8.2f %7.2f %8.2f %7.2f %5d MiB" % (label, r[0], r[0] / base[0], r[3], r[3] / base[3], r[1] // 1024))
    line("tar | zstd -%d -T0" % a.level, ref_b, ref_b)
    for th in a.threads:
        line("engine backup (threads %s)" % (th if th else "auto"), results[th], ref_b)
    if cli_runs:
        line("ordinal-backup backup (CLI)", pick(cli_runs), ref_b)
    # The engine's restore flushes what it wrote (syncfs, to see writeback errors before the
    # swap), so both it and the command compare with tar && sync; the plain tar line is there
    # for the cost of that flush.
    line("zstd -dc | tar -xf -", ref_r, ref_r)
    if crr:
        line("zstd -dc | tar -xf - && sync", pick(rrs), pick(rrs))
        line("engine restore (staging, flushed)", our_r, pick(rrs))
        line("ordinal-backup restore (CLI)", pick(crr), pick(rrs))
        line("ordinal-backup restore vs no sync", pick(crr), ref_r)
    else:
        line("engine restore (staging, flushed)", our_r, ref_r)
    line("engine verify", ver, ref_r)
    print()
    print("stored: ordinal %d bytes, tar|zstd %d bytes, ratio %.4f" % (obj_size, ref_size, obj_size / ref_size))
    print("files %s, content bytes %s" % (files, bytes_in))
    if not a.keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
