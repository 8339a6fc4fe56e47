/*
 * lock.c - see lock.h.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "id.h"
#include "lock.h"

#define LOCK_TEXT_MAX 4096
#define LOCK_ATTEMPTS 5

struct repo_lock {
    struct repo *repo;
    char key[REPO_KEY_MAX + 1];
    char *content;
    size_t len;
};

static void cjson_deletep(cJSON **p)
{
    if (*p)
        cJSON_Delete(*p);
}

static int read_small_file(const char *path, char *buf, size_t size)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = read(fd, buf, size - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return (int)n;
}

int lock_proc_start(int64_t pid, uint64_t *ret)
{
    char path[64], buf[2048];
    const char *p;
    char *end;
    unsigned long long v;
    int r;

    if (pid <= 0)
        return -ESRCH;
    snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
    r = read_small_file(path, buf, sizeof(buf));
    if (r == -ENOENT)
        return -ESRCH;
    if (r < 0)
        return r;
    /* The command name may hold spaces and parentheses: fields resume after the last ')'. */
    p = strrchr(buf, ')');
    if (!p)
        return -EIO;
    p++;
    /* Field 3 (state) follows; starttime is field 22, so skip 19 fields. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return -EIO;
    }
    while (*p == ' ')
        p++;
    if (*p < '0' || *p > '9')
        return -EIO;
    errno = 0;
    v = strtoull(p, &end, 10);
    if (errno || (*end != ' ' && *end != '\n' && *end != '\0'))
        return -EIO;
    *ret = v;
    return 0;
}

int lock_info_self(const char *operation, struct lock_info *ret)
{
    struct lock_info li = {0};
    uint8_t rnd[16] = {0};
    char boot[128];
    int r;

    if (gethostname(li.host, sizeof(li.host) - 1) < 0)
        return -errno;
    li.pid = getpid();
    r = lock_proc_start(li.pid, &li.start_time);
    if (r < 0)
        return r;
    r = read_small_file("/proc/sys/kernel/random/boot_id", boot, sizeof(boot));
    if (r > 0) {
        boot[strcspn(boot, "\n")] = '\0';
        snprintf(li.boot_id, sizeof(li.boot_id), "%s", boot);
    }
    snprintf(li.operation, sizeof(li.operation), "%s", operation);
    if (time_format_rfc3339(time(NULL), li.created, sizeof(li.created)) < 0)
        return -ERANGE;
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return -EIO;
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(li.nonce + 2 * i, 3, "%02x", rnd[i]);
    *ret = li;
    return 0;
}

int lock_info_format(const struct lock_info *li, char **ret)
{
    _cleanup_(cjson_deletep) cJSON *o = cJSON_CreateObject();
    char *text;

    if (!o || !cJSON_AddStringToObject(o, "host", li->host) ||
        !cJSON_AddNumberToObject(o, "pid", (double)li->pid) ||
        !cJSON_AddNumberToObject(o, "start_time", (double)li->start_time) ||
        !cJSON_AddStringToObject(o, "boot_id", li->boot_id) ||
        !cJSON_AddStringToObject(o, "operation", li->operation) ||
        !cJSON_AddStringToObject(o, "created", li->created) ||
        !cJSON_AddStringToObject(o, "nonce", li->nonce))
        return -ENOMEM;
    text = cJSON_Print(o);
    if (!text)
        return -ENOMEM;
    *ret = text;
    return 0;
}

static int str_field(const cJSON *o, const char *name, char *buf, size_t size)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

    if (!cJSON_IsString(it) || !it->valuestring || strlen(it->valuestring) >= size)
        return -EBADMSG;
    memcpy(buf, it->valuestring, strlen(it->valuestring) + 1);
    return 0;
}

static int num_field(const cJSON *o, const char *name, double max, double *ret)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);

    if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0) || it->valuedouble > max ||
        it->valuedouble != (double)(uint64_t)it->valuedouble)
        return -EBADMSG;
    *ret = it->valuedouble;
    return 0;
}

int lock_info_parse(const char *text, size_t len, struct lock_info *ret)
{
    _cleanup_(cjson_deletep) cJSON *o = NULL;
    struct lock_info li = {0};
    double pid, start;

    if (len > LOCK_TEXT_MAX)
        return -EBADMSG;
    o = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(o))
        return -EBADMSG;
    if (str_field(o, "host", li.host, sizeof(li.host)) < 0 ||
        num_field(o, "pid", 4194304.0 * 1024, &pid) < 0 ||
        num_field(o, "start_time", 9007199254740992.0, &start) < 0 ||
        str_field(o, "boot_id", li.boot_id, sizeof(li.boot_id)) < 0 ||
        str_field(o, "operation", li.operation, sizeof(li.operation)) < 0 ||
        str_field(o, "created", li.created, sizeof(li.created)) < 0 ||
        str_field(o, "nonce", li.nonce, sizeof(li.nonce)) < 0)
        return -EBADMSG;
    li.pid = (int64_t)pid;
    li.start_time = (uint64_t)start;
    *ret = li;
    return 0;
}

bool lock_is_stale(const struct lock_info *holder, const struct lock_info *self,
                   lock_proc_start_fn proc_start)
{
    uint64_t start;
    int r;

    if (!streq(holder->host, self->host))
        return false;
    if (holder->boot_id[0] && self->boot_id[0] && !streq(holder->boot_id, self->boot_id))
        return true;
    r = proc_start(holder->pid, &start);
    if (r == -ESRCH)
        return true;
    if (r < 0)
        return false;
    return start != holder->start_time;
}

static void lock_free(struct repo_lock *l)
{
    if (!l)
        return;
    free(l->content);
    free(l);
}

int lock_acquire(struct repo *r, const struct sts_ref *sts, const char *operation,
                 struct repo_lock **ret, ord_err *e)
{
    return lock_acquire_ex(r, sts, operation, NULL, NULL, ret, e);
}

int lock_acquire_ex(struct repo *r, const struct sts_ref *sts, const char *operation,
                    lock_holder_gone_fn holder_gone, void *ctx, struct repo_lock **ret, ord_err *e)
{
    struct repo_lock *l;
    struct lock_info self;
    int rc;

    l = calloc(1, sizeof(*l));
    if (!l)
        return err_set(e, -ENOMEM, "out of memory");
    l->repo = r;
    if (repo_key_lock(l->key, sizeof(l->key), sts->ns, sts->name) < 0) {
        lock_free(l);
        return err_set(e, -ENAMETOOLONG, "the lock name is too long");
    }
    rc = lock_info_self(operation, &self);
    if (rc < 0 || (rc = lock_info_format(&self, &l->content)) < 0) {
        lock_free(l);
        return err_set_errno(e, rc, "describing this process for the lock");
    }
    l->len = strlen(l->content);
    /* Every lock taker writes here: one that cannot is told now, with what to fix, rather than
     * with the bare EACCES of the create below. */
    rc = repo_check_writable(r, sts->ns, sts->name, NULL, REPO_WRITE_LOCK, e);
    if (rc < 0) {
        lock_free(l);
        return rc;
    }

    for (int attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
        _cleanup_free_ char *old = NULL;
        struct lock_info holder;
        size_t len;

        rc = repo_create_excl(r, l->key, l->content, l->len, e);
        if (rc == 0) {
            *ret = l;
            return 0;
        }
        if (rc != -EEXIST)
            break;
        rc = repo_get_small(r, l->key, LOCK_TEXT_MAX, &old, &len, e);
        if (rc == -ENOENT) { /* released meanwhile */
            err_clear(e);
            continue;
        }
        if (rc < 0)
            break;
        if (lock_info_parse(old, len, &holder) < 0) {
            rc = err_set(e, -EBUSY,
                         "%s/%s is locked, and the lock object '%s' in the repository is "
                         "damaged; if no backup, restore or prune of it is running, remove that "
                         "object",
                         sts->ns, sts->name, l->key);
            break;
        }
        if (!lock_is_stale(&holder, &self, lock_proc_start) &&
            !(holder_gone && holder_gone(&holder, ctx))) {
            rc = err_set(e, -EBUSY,
                         "%s/%s is locked by a %s running on host '%s' (pid %lld, since %s); "
                         "wait for it to finish, or if that process is gone remove the lock "
                         "object '%s' from the repository",
                         sts->ns, sts->name, holder.operation, holder.host, (long long)holder.pid,
                         holder.created, l->key);
            break;
        }
        rc = repo_remove_if(r, l->key, old, len, e);
        if (rc < 0 && rc != -ENOENT && rc != -ESTALE)
            break;
        err_clear(e);
    }
    if (rc >= 0 || !e || e->code == 0)
        rc = err_set(e, rc < 0 ? rc : -EBUSY, "could not take the lock of %s/%s", sts->ns,
                     sts->name);
    lock_free(l);
    return rc;
}

void lock_release(struct repo_lock *l)
{
    if (!l)
        return;
    (void)repo_remove_if(l->repo, l->key, l->content, l->len, NULL);
    lock_free(l);
}
