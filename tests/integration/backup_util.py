"""Helpers shared by the ordinal-backup integration tests (standard library only).

- Backup: runs `ordinal-backup` with a node root and a directory repository.
- make_layout(): a node layout <root>/<ns>/<sts>/<ordinal>/<template> with deterministic data.
- tree_hash(): a digest of everything a restore must bring back in a volume (names, types,
  modes, sizes, contents, symlink targets), never following symlinks.
"""

import hashlib
import json
import os
import random
import socket
import stat
import subprocess

from harness import bin_path


def tree_hash(path):
    """Digest of the tree at path (the entry itself may be missing: returns 'missing')."""
    if not os.path.lexists(path):
        return "missing"
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames.sort()
        rel = os.path.relpath(dirpath, path)
        st = os.lstat(dirpath)
        h.update(f"D {rel} {stat.S_IMODE(st.st_mode):o}\n".encode())
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                h.update(f"L {rel}/{name} -> {os.readlink(full)}\n".encode())
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                h.update(f"F {rel}/{name} {stat.S_IMODE(st.st_mode):o} {st.st_size} {digest}\n".encode())
            else:
                h.update(f"O {rel}/{name} {st.st_mode:o}\n".encode())
    return h.hexdigest()


def write_volume(path, seed, size=64 * 1024, files=8):
    """Fills a directory volume with data derived from seed (replacing what was there)."""
    rng = random.Random(seed)
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            subprocess.run(["rm", "-rf", "--", full], check=True)
        else:
            os.unlink(full)
    os.makedirs(os.path.join(path, "sub", "deeper"))
    with open(os.path.join(path, "big.bin"), "wb") as f:
        f.write(rng.randbytes(size))
    for i in range(files):
        with open(os.path.join(path, "sub", f"small-{seed}-{i}.txt"), "w") as f:
            f.write(f"seed {seed} file {i}\n" * (i + 1))
    with open(os.path.join(path, "sub", "deeper", "zeros"), "wb") as f:
        f.write(bytes(4096 * (seed % 5 + 1)))
    os.symlink("sub/small-%d-0.txt" % seed, os.path.join(path, "link"))


def make_layout(root, ns="default", sts="web", ordinals=(0, 1, 2), templates=("data",),
                extra=None, size=64 * 1024, seed=0):
    """Creates <root>/<ns>/<sts>/<k>/<template> for every ordinal and template; extra maps an
    ordinal to additional template names. Returns {(ordinal, template): path}."""
    vols = {}
    for k in ordinals:
        for t in list(templates) + list((extra or {}).get(k, ())):
            path = os.path.join(root, ns, sts, str(k), t)
            write_volume(path, seed * 1000 + k * 10 + len(t), size=size)
            vols[(k, t)] = path
    return vols


def hashes(vols):
    return {key: tree_hash(path) for key, path in vols.items()}


class Backup:
    """Runs ordinal-backup against one node root and one repository."""

    def __init__(self, root, repo):
        self.root = root
        self.repo = repo
        self.bin = bin_path("ordinal-backup")

    def run(self, *args, check=None, timeout=120):
        """Runs `ordinal-backup ARGS`; check=N asserts the exit code."""
        p = subprocess.run([self.bin, *map(str, args)], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check is not None and p.returncode != check:
            raise AssertionError(f"ordinal-backup {' '.join(map(str, args))}: exit "
                                 f"{p.returncode}, expected {check}\nstdout: {p.stdout}\n"
                                 f"stderr: {p.stderr}")
        return p

    def args(self, cmd, sts="default/web", root=True):
        a = [cmd, "--repo", self.repo]
        if root:
            a += ["--root", self.root]
        if sts:
            a += ["--statefulset", sts]
        return a

    def backup(self, *extra, sts="default/web", check=0):
        p = self.run(*self.args("backup", sts), "--json", *extra, check=check)
        return json.loads(p.stdout) if check == 0 else p

    def restore(self, *extra, sts="default/web", check=0):
        p = self.run(*self.args("restore", sts), "--json", *extra, check=check)
        return json.loads(p.stdout) if check == 0 else p

    def list(self, sts=None):
        a = ["list", "--repo", self.repo, "--json"]
        if sts:
            a += ["--statefulset", sts]
        return json.loads(self.run(*a, check=0).stdout)

    def backup_dir(self, bid, ns="default", sts="web"):
        return os.path.join(self.repo, "backups", ns, sts, bid)


def proc_start_time(pid):
    """Field 22 of /proc/<pid>/stat (what the lock records)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return int(data[data.rindex(")") + 2:].split()[19])


def lock_content(pid, host=None, boot_id=None, start_time=None, operation="backup"):
    if boot_id is None:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    if start_time is None:
        try:
            start_time = proc_start_time(pid)
        except OSError:
            start_time = 12345
    return json.dumps({"host": host or socket.gethostname(), "pid": pid,
                       "start_time": start_time, "boot_id": boot_id, "operation": operation,
                       "created": "2026-01-01T00:00:00Z", "nonce": "0" * 32})


def staging_leftovers(root):
    """Names beginning with '.' anywhere under the ordinal directories of root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            if n.startswith(".") and ".restore-" in n:
                found.append(os.path.join(dirpath, n))
    return found


def page_cache_state(path):
    """(dirty pages, pages under writeback) of a file, from cachestat(2) (Linux 6.5); None when
    the kernel has no cachestat or the file is on tmpfs (whose pages are always dirty)."""
    import ctypes
    import struct
    fs = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    if fs.stdout.strip() == "tmpfs":
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    rng = struct.pack("QQ", 0, 0)  # off 0, len 0: the whole file
    out = ctypes.create_string_buffer(40)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.syscall(451, fd, ctypes.c_char_p(rng), out, 0) != 0:
            return None
    finally:
        os.close(fd)
    cache, dirty, writeback, _, _ = struct.unpack("5Q", out.raw)
    return dirty, writeback
