/*
 * blk_discover.c - device discovery, probing, best fit and wipe (see blk_discover.h).
 *
 * The only file that includes blkid.h. libblkid's probe results are translated here:
 * blkid_do_safeprobe() 0 (one signature) -> BLK_SIGNATURE with its type, 1 (nothing) -> free,
 * -2 (several signatures that contradict each other) -> BLK_SIGNATURE "conflicting
 * signatures", -1 -> BLK_ERROR / -EIO.
 *
 * "Free" means: no signature at all. The provisioner leaves no marker of its own on a device it
 * releases: ownership is recorded in PVs and in the node layout (the source of truth across
 * restarts), so a marker would carry no information, and a device with nothing on it is what
 * an administrator hands to the pool anyway. It also keeps `blkid -p` and `wipefs` silent
 * on released devices, which is what a person checks.
 */
#include <blkid/blkid.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blk_discover.h"
#include "log.h"
#include "quantity.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(blkid_probe, blkid_free_probe)

void blk_format_devid(dev_t rdev, char *buf, size_t size)
{
    snprintf(buf, size, "%u:%u", major(rdev), minor(rdev));
}

int blk_parse_devid(const char *s, dev_t *ret)
{
    unsigned long ma, mi;
    char *end;

    if (!s || !*s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    ma = strtoul(s, &end, 10);
    if (errno || *end != ':' || end[1] < '0' || end[1] > '9' || ma > 0xfffff)
        return -EINVAL;
    mi = strtoul(end + 1, &end, 10);
    if (errno || *end || mi > 0xfffff)
        return -EINVAL;
    *ret = makedev((unsigned)ma, (unsigned)mi);
    return 0;
}

/* Unescapes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_mount(char *s)
{
    char *o = s;

    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

int blk_mount_point(dev_t rdev, char *buf, size_t size)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096];
    int found = 0;

    if (!f)
        return -errno;
    /* "36 35 98:0 /root /mnt/point opts ..." : field 3 is the device, field 5 the mount point */
    while (!found && fgets(line, sizeof(line), f)) {
        char devid[32], mnt[2048];
        dev_t d;

        if (sscanf(line, "%*s %*s %31s %*s %2047s", devid, mnt) != 2)
            continue;
        if (blk_parse_devid(devid, &d) == 0 && d == rdev) {
            unescape_mount(mnt);
            snprintf(buf, size, "%s", mnt);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* Describes the signature the probe found (TYPE / PTTYPE / USAGE) as a phrase. */
static void describe_signature(blkid_probe pr, char *buf, size_t size)
{
    const char *type = NULL, *usage = NULL, *pttype = NULL;

    (void)blkid_probe_lookup_value(pr, "TYPE", &type, NULL);
    (void)blkid_probe_lookup_value(pr, "USAGE", &usage, NULL);
    (void)blkid_probe_lookup_value(pr, "PTTYPE", &pttype, NULL);
    if (type && usage && streq(usage, "raid"))
        snprintf(buf, size, "is a RAID/LVM member (%s)", type);
    else if (type && usage && streq(usage, "crypto"))
        snprintf(buf, size, "has an encrypted volume (%s)", type);
    else if (type && usage && streq(usage, "filesystem"))
        snprintf(buf, size, "has %s %s filesystem", strchr("aeiouAEIOU", type[0]) ? "an" : "a",
                 type);
    else if (type)
        snprintf(buf, size, "has a %s signature", type);
    else if (pttype)
        snprintf(buf, size, "has a %s partition table", pttype);
    else
        snprintf(buf, size, "has a signature");
}

/*
 * Probes the device open at fd (read-only) for any signature, with libblkid's safe probe.
 * Returns 1 (nothing), 0 (signature; described in buf), -EIO.
 */
static int probe_signature(int fd, char *buf, size_t size)
{
    _cleanup_(blkid_free_probep) blkid_probe pr = blkid_new_probe();
    int r;

    if (!pr)
        return -ENOMEM;
    if (blkid_probe_set_device(pr, fd, 0, 0) < 0)
        return -EIO;
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE);
    blkid_probe_enable_partitions(pr, 1);
    blkid_probe_set_partitions_flags(pr, 0);
    r = blkid_do_safeprobe(pr);
    switch (r) {
    case 1:
        return 1;
    case 0:
        describe_signature(pr, buf, size);
        return 0;
    case -2:
        snprintf(buf, size, "has several conflicting signatures");
        return 0;
    default:
        return -EIO;
    }
}

int blk_probe(const char *path, struct blk_candidate *ret)
{
    _cleanup_close_ int fd = -EBADF, xfd = -EBADF;
    struct blk_candidate c = {0};
    struct stat st;
    uint64_t size = 0;
    char *real;
    int r;

    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISBLK(st.st_mode))
        return -ENOTBLK;
    snprintf(c.path, sizeof(c.path), "%s", path);
    real = realpath(path, NULL);
    snprintf(c.devname, sizeof(c.devname), "%s", real ? real : path);
    free(real);
    c.rdev = st.st_rdev;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        c.state = (errno == ENXIO || errno == ENOMEDIUM) ? BLK_EMPTY : BLK_ERROR;
        snprintf(c.detail, sizeof(c.detail), "cannot be opened: %s", strerror(errno));
        goto done;
    }
    if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
        c.state = BLK_ERROR;
        snprintf(c.detail, sizeof(c.detail), "cannot be sized: %s", strerror(errno));
        goto done;
    }
    c.size = size;
    if (size == 0) {
        c.state = BLK_EMPTY;
        snprintf(c.detail, sizeof(c.detail), "has size 0 (detached loop device or no medium)");
        goto done;
    }
    r = blk_mount_point(st.st_rdev, c.detail, sizeof(c.detail));
    if (r > 0) {
        char mnt[BLK_DETAIL_MAX - 16];

        snprintf(mnt, sizeof(mnt), "%s", c.detail);
        snprintf(c.detail, sizeof(c.detail), "mounted at %s", mnt);
        c.state = BLK_MOUNTED;
        goto done;
    }
    /* Mounted elsewhere (another namespace), a device-mapper or RAID holder, mkfs running. */
    xfd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK);
    if (xfd < 0) {
        if (errno == EBUSY) {
            c.state = BLK_BUSY;
            snprintf(c.detail, sizeof(c.detail), "is held open exclusively (in use)");
        } else {
            c.state = BLK_ERROR;
            snprintf(c.detail, sizeof(c.detail), "cannot be opened: %s", strerror(errno));
        }
        goto done;
    }
    closep(&xfd);
    r = probe_signature(fd, c.detail, sizeof(c.detail));
    if (r == 0)
        c.state = BLK_SIGNATURE;
    else if (r == 1)
        c.state = BLK_FREE;
    else {
        c.state = BLK_ERROR;
        snprintf(c.detail, sizeof(c.detail), "cannot be probed: %s", strerror(-r));
    }
done:
    *ret = c;
    return 0;
}

static int cmp_candidate(const void *a, const void *b)
{
    return strcmp(((const struct blk_candidate *)a)->path, ((const struct blk_candidate *)b)->path);
}

int blk_discover_dir(const char *dir, blk_owned_fn owned, void *ud, struct blk_candidate **ret,
                     size_t *ret_n, ord_err *e)
{
    _cleanup_free_ struct blk_candidate *c = NULL;
    DIR *d;
    struct dirent *de;
    size_t n = 0;

    d = opendir(dir);
    if (!d)
        return err_set_errno(e, -errno, "cannot read device directory '%s'", dir);
    c = calloc(BLK_CANDIDATES_MAX, sizeof(*c));
    if (!c) {
        closedir(d);
        return err_set(e, -ENOMEM, "out of memory");
    }
    while ((de = readdir(d)) && n < BLK_CANDIDATES_MAX) {
        char path[BLK_PATH_MAX];
        struct stat st;
        int r;

        if (de->d_name[0] == '.')
            continue;
        r = snprintf(path, sizeof(path), "%s/%s", streq(dir, "/") ? "" : dir, de->d_name);
        if (r < 0 || (size_t)r >= sizeof(path))
            continue;
        if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode)) {
            log_debug("device directory '%s': ignoring '%s' (not a block device)", dir, de->d_name);
            continue;
        }
        if (owned && owned(st.st_rdev, path, c[n].detail, sizeof(c[n].detail), ud)) {
            _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
            char *real = realpath(path, NULL);

            snprintf(c[n].path, sizeof(c[n].path), "%s", path);
            snprintf(c[n].devname, sizeof(c[n].devname), "%s", real ? real : path);
            free(real);
            c[n].rdev = st.st_rdev;
            c[n].state = BLK_OWNED;
            if (fd >= 0)
                (void)ioctl(fd, BLKGETSIZE64, &c[n].size);
            n++;
            continue;
        }
        r = blk_probe(path, &c[n]);
        if (r < 0) {
            log_debug("device directory '%s': ignoring '%s': %s", dir, de->d_name, strerror(-r));
            continue;
        }
        n++;
    }
    if (n == BLK_CANDIDATES_MAX && de)
        log_debug("device directory '%s': more than %d entries; the rest are not offered", dir,
                  BLK_CANDIDATES_MAX);
    closedir(d);
    qsort(c, n, sizeof(*c), cmp_candidate);
    *ret = TAKE_PTR(c);
    *ret_n = n;
    return 0;
}

void blk_refusal(const struct blk_candidate *c, uint64_t request, char *buf, size_t size)
{
    char q1[QUANTITY_STR_MAX], q2[QUANTITY_STR_MAX];

    if (c->state == BLK_FREE)
        snprintf(buf, size, "%s (%s, %s): too small for %s", c->path, c->devname,
                 quantity_format(c->size, q1), quantity_format(request, q2));
    else if (c->state == BLK_OWNED)
        snprintf(buf, size, "%s (%s): in use by %s", c->path, c->devname, c->detail);
    else
        snprintf(buf, size, "%s (%s): %s", c->path, c->devname, c->detail);
}

int blk_best_fit(const struct blk_candidate *c, size_t n, uint64_t request, size_t *ret_idx,
                 char *why, size_t why_size)
{
    size_t best = n, o = 0, listed = 0;

    for (size_t i = 0; i < n; i++)
        if (c[i].state == BLK_FREE && c[i].size >= request &&
            (best == n || c[i].size < c[best].size))
            best = i;
    if (best < n) {
        *ret_idx = best;
        return 0;
    }
    if (why_size)
        why[0] = '\0';
    for (size_t i = 0; i < n && why_size; i++) {
        char one[BLK_PATH_MAX * 2 + BLK_DETAIL_MAX];
        int w;

        blk_refusal(&c[i], request, one, sizeof(one));
        /* Keep room for the "... and N more" tail. */
        if (o + strlen(one) + 2 + 24 >= why_size) {
            snprintf(why + o, why_size - o, "%s... and %zu more", o ? "; " : "", n - listed);
            break;
        }
        w = snprintf(why + o, why_size - o, "%s%s", o ? "; " : "", one);
        o += (size_t)w;
        listed++;
    }
    return n == 0 ? -ENODEV : -ENOSPC;
}

/* Discards, then zeroes, [off, off+len) of the device. Returns 0 or a negative errno. */
static int clear_range(int fd, uint64_t off, uint64_t len)
{
    uint64_t range[2] = {off, len};
    static const char zeros[65536];

    /* Discard gives thin and flash storage the space back; zeroing is what guarantees. */
    (void)ioctl(fd, BLKDISCARD, range);
    range[0] = off;
    range[1] = len;
    if (ioctl(fd, BLKZEROOUT, range) == 0)
        return 0;
    for (uint64_t done = 0; done < len;) {
        size_t chunk = (size_t)MIN((uint64_t)sizeof(zeros), len - done);
        ssize_t w = pwrite(fd, zeros, chunk, (off_t)(off + done));

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (uint64_t)w;
    }
    return 0;
}

/* Appends a type to the comma-separated list in buf (bounded). */
static void list_add(char *buf, size_t size, const char *what)
{
    size_t o = strlen(buf);

    if (size && o + 1 < size)
        snprintf(buf + o, size - o, "%s%s", o ? "," : "", what);
}

int blk_wipe(const char *path, dev_t rdev, uint64_t size, const char *own_fs, char *ret_wiped,
             size_t wiped_size, ord_err *e)
{
    _cleanup_close_ int fd = -EBADF;
    _cleanup_(blkid_free_probep) blkid_probe pr = NULL;
    char mnt[BLK_DETAIL_MAX], wiped[256] = "", devid[32], q1[QUANTITY_STR_MAX],
                              q2[QUANTITY_STR_MAX];
    struct stat st;
    uint64_t real = 0;
    int r;

    blk_format_devid(rdev, devid, sizeof(devid));
    /* Checked before the open so that the message says where it is mounted. */
    if (blk_mount_point(rdev, mnt, sizeof(mnt)) > 0)
        return err_set(e, -EBUSY, "device %s (%s) is mounted at %s; not wiping it", path, devid,
                       mnt);
    fd = open(path, O_RDWR | O_EXCL | O_CLOEXEC);
    if (fd < 0) {
        if (errno == EBUSY)
            return err_set(e, -EBUSY,
                           "device %s (%s) is held open exclusively (mounted in another "
                           "namespace, or claimed by device-mapper/RAID); not wiping it",
                           path, devid);
        return err_set_errno(e, -errno, "cannot open device %s (%s)", path, devid);
    }
    if (fstat(fd, &st) < 0)
        return err_set_errno(e, -errno, "cannot stat device %s", path);
    if (!S_ISBLK(st.st_mode) || st.st_rdev != rdev) {
        char now[32];

        blk_format_devid(st.st_rdev, now, sizeof(now));
        return err_set(e, -ESTALE,
                       "%s now names device %s, not the volume's device %s; not wiping it", path,
                       S_ISBLK(st.st_mode) ? now : "(not a block device)", devid);
    }
    if (ioctl(fd, BLKGETSIZE64, &real) < 0)
        return err_set_errno(e, -errno, "cannot size device %s", path);
    if (real == 0)
        return err_set(e, -ENXIO, "device %s (%s) has size 0 (detached or no medium)", path, devid);
    if (size && real != size)
        return err_set(e, -ESTALE,
                       "device %s (%s) has %s, the volume's device had %s: it is another "
                       "device now; not wiping it",
                       path, devid, quantity_format(real, q1), quantity_format(size, q2));

    pr = blkid_new_probe();
    if (!pr)
        return err_set(e, -ENOMEM, "out of memory");
    if (blkid_probe_set_device(pr, fd, 0, 0) < 0)
        return err_set(e, -EIO, "libblkid cannot probe %s", path);
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_TYPE |
                                              BLKID_SUBLKS_USAGE | BLKID_SUBLKS_BADCSUM);
    blkid_probe_enable_partitions(pr, 1);
    blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);

    /*
     * First pass, read only: a Filesystem volume's device may carry the filesystem kubelet
     * made (its own data, to be wiped), nothing else. Anything else appeared behind our back.
     */
    if (own_fs) {
        while ((r = blkid_do_probe(pr)) == 0) {
            const char *type = NULL, *pttype = NULL;
            char what[BLK_DETAIL_MAX];

            (void)blkid_probe_lookup_value(pr, "TYPE", &type, NULL);
            (void)blkid_probe_lookup_value(pr, "PTTYPE", &pttype, NULL);
            if (type && streq(type, own_fs))
                continue;
            describe_signature(pr, what, sizeof(what));
            return err_set(e, -EEXIST,
                           "device %s (%s) %s, which its %s volume does not explain; not "
                           "wiping it (check it, then wipe it by hand with wipefs -a)",
                           path, devid, what, own_fs);
        }
        if (r < 0)
            return err_set(e, -EIO, "libblkid cannot probe %s", path);
        blkid_reset_probe(pr);
    }

    /* blkid_do_wipe() steps the probe back after each erase, so one loop finds them all. */
    while ((r = blkid_do_probe(pr)) == 0) {
        const char *type = NULL;

        if (blkid_probe_lookup_value(pr, "TYPE", &type, NULL) < 0)
            (void)blkid_probe_lookup_value(pr, "PTTYPE", &type, NULL);
        if (blkid_do_wipe(pr, 0) < 0)
            return err_set_errno(e, errno ? -errno : -EIO, "cannot erase the %s signature on %s",
                                 type ? type : "?", path);
        list_add(wiped, sizeof(wiped), type ? type : "?");
    }
    if (r < 0)
        return err_set(e, -EIO, "libblkid cannot probe %s", path);

    r = clear_range(fd, 0, MIN(real, (uint64_t)BLK_EDGE_BYTES));
    if (r == 0 && real > BLK_EDGE_BYTES)
        r = clear_range(fd, real - MIN(real - BLK_EDGE_BYTES, (uint64_t)BLK_EDGE_BYTES),
                        MIN(real - BLK_EDGE_BYTES, (uint64_t)BLK_EDGE_BYTES));
    if (r < 0)
        return err_set_errno(e, r, "cannot clear the first and last MiB of %s", path);
    if (fsync(fd) < 0)
        return err_set_errno(e, -errno, "cannot sync %s", path);
    (void)ioctl(fd, BLKFLSBUF, 0);

    /* Verify with a fresh probe: released means "nothing on it" (see the top of this file). */
    r = probe_signature(fd, mnt, sizeof(mnt));
    if (r == 0)
        return err_set(e, -EIO, "device %s still %s after the wipe", path, mnt);
    if (r < 0)
        return err_set(e, r, "cannot probe %s after the wipe", path);
    if (ret_wiped)
        snprintf(ret_wiped, wiped_size, "%s", wiped[0] ? wiped : "none");
    return 0;
}
