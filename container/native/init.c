/* juggler-init: a container's set-up, between the executor's spawn and the
 * task's execve, without a copy of the executor's Python.
 *
 * The executor (container/launch.py) decides everything: container/
 * native_init.py turns the launch into a plan, a list of steps, and starts
 * this program with posix_spawn(3) (no page table or heap of the executor
 * copied). This program carries the plan out step by step and execs the
 * task, or reports the failed step on the error pipe as the Python child
 * does ("code\nmessage", code 125 setup, 126 not executable, 127 not found:
 * container/process.py) and exits with that code.
 *
 *     juggler-init PLAN_FD ERR_FD
 *
 * The plan (read whole from PLAN_FD, a memfd) is a sequence of steps; each
 * is a list of fields, each field a decimal length, ':' and that many bytes;
 * a step is its field count, ':', then its fields. The first field names
 * the operation; the others are its arguments, numbers in decimal. Each
 * operation is the one of the Python function named beside it below, with
 * the same order of system calls and the same checks: the tests run the
 * same containers through both (tests/integration/test_native_init.py).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#define EXIT_SETUP_FAILED 125
#define EXIT_NOT_EXECUTABLE 126
#define EXIT_NOT_FOUND 127
/* Fields per step: argv and env are bounded by ARG_MAX (2 MiB here) anyway. */
#define MAX_FIELDS 262144

/* Which source this binary was built from: native_init.build() passes its
 * SHA-256, and native_init.built() looks for this string in the binary. */
#ifndef JUGGLER_INIT_SOURCE_SHA256
#define JUGGLER_INIT_SOURCE_SHA256 "unknown"
#endif
__attribute__((used)) static const char source_digest[] =
    "juggler-init source sha256 " JUGGLER_INIT_SOURCE_SHA256;

#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

struct mount_attr_arg {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int err_fd = -1;
static char step[4096] = "container setup";

/* Report `message` on the error pipe and exit with `code`. */
static void fail_with(int code, const char *fmt, ...)
{
    char buf[8192];
    int n = snprintf(buf, sizeof buf, "%d\n", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, sizeof buf - n, fmt, ap);
    va_end(ap);
    if (err_fd >= 0) {
        size_t len = strlen(buf), off = 0;
        while (off < len) {
            ssize_t w = write(err_fd, buf + off, len - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
    }
    _exit(code);
}

/* The current step failed with errno `e`: "step: strerror". */
static void fail_errno(int e)
{
    fail_with(EXIT_SETUP_FAILED, "%s: %s", step, strerror(e));
}

#define CHECK(call) do { if ((call) < 0) fail_errno(errno); } while (0)

/* Python's repr() of a str, into `out` (as syscalls.py names its arguments):
 * single quotes unless the text holds one and no double quote; \\, \n,
 * \r, \t and other control bytes escaped; other bytes as they are. NULL
 * is None. Returns `out`. */
static const char *pyrepr(const char *s, char *out, size_t size)
{
    if (!s) {
        snprintf(out, size, "None");
        return out;
    }
    char quote = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    size_t n = 0;
    out[n++] = quote;
    for (; *s && n + 6 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\' || c == (unsigned char)quote)
            n += (size_t)snprintf(out + n, size - n, "\\%c", c);
        else if (c == '\n')
            n += (size_t)snprintf(out + n, size - n, "\\n");
        else if (c == '\r')
            n += (size_t)snprintf(out + n, size - n, "\\r");
        else if (c == '\t')
            n += (size_t)snprintf(out + n, size - n, "\\t");
        else if (c < 0x20 || c == 0x7f)
            n += (size_t)snprintf(out + n, size - n, "\\x%02x", c);
        else
            out[n++] = (char)c;
    }
    out[n++] = quote;
    out[n] = '\0';
    return out;
}

/* A system call syscalls.py wraps failed with errno `e`: "step: call:
 * strerror", its OSError's text. */
static void fail_call(int e, const char *fmt, ...)
{
    char call[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call, sizeof call, fmt, ap);
    va_end(ap);
    fail_with(EXIT_SETUP_FAILED, "%s: %s: %s", step, call, strerror(e));
}

/* syscalls.prctl */
static void do_prctl(int option, unsigned long arg2)
{
    if (prctl(option, arg2, 0, 0, 0) < 0)
        fail_call(errno, "prctl(%d, %lu)", option, arg2);
}

/* -- the plan ------------------------------------------------------------ */

static char *plan;
static size_t plan_len, plan_pos;

static long number(const char *field)
{
    char *end;
    errno = 0;
    long v = strtol(field, &end, 10);
    if (errno || *end)
        fail_with(EXIT_SETUP_FAILED, "container setup: bad number %s in the plan", field);
    return v;
}

static size_t read_length(void)
{
    size_t v = 0;
    int digits = 0;
    while (plan_pos < plan_len && isdigit((unsigned char)plan[plan_pos])) {
        v = v * 10 + (size_t)(plan[plan_pos++] - '0');
        digits++;
    }
    if (!digits || plan_pos >= plan_len || plan[plan_pos] != ':')
        fail_with(EXIT_SETUP_FAILED, "container setup: the plan is malformed");
    plan_pos++;
    return v;
}

/* The next step's fields, NUL-terminated in place: each field moves one
 * byte left, over the ':' before it, and its NUL takes its old last byte,
 * so nothing still to be read is overwritten. */
static int next_step(char **fields)
{
    if (plan_pos >= plan_len)
        return 0;
    size_t count = read_length();
    if (count == 0 || count > MAX_FIELDS)
        fail_with(EXIT_SETUP_FAILED, "container setup: the plan is malformed");
    for (size_t i = 0; i < count; i++) {
        size_t len = read_length();
        if (len > plan_len - plan_pos)
            fail_with(EXIT_SETUP_FAILED, "container setup: the plan is malformed");
        fields[i] = plan + plan_pos;
        plan_pos += len;
        memmove(fields[i] - 1, fields[i], len);
        fields[i] -= 1;
        fields[i][len] = '\0';
    }
    fields[count] = NULL;
    return (int)count;
}

static void read_plan(int fd)
{
    size_t cap = 65536;
    plan = malloc(cap);
    if (!plan)
        fail_with(EXIT_SETUP_FAILED, "container setup: out of memory");
    for (;;) {
        if (plan_len == cap) {
            cap *= 2;
            plan = realloc(plan, cap);
            if (!plan)
                fail_with(EXIT_SETUP_FAILED, "container setup: out of memory");
        }
        ssize_t r = read(fd, plan + plan_len, cap - plan_len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            fail_with(EXIT_SETUP_FAILED, "container setup: read the plan: %s", strerror(errno));
        if (r == 0)
            break;
        plan_len += (size_t)r;
    }
    close(fd);
}

/* -- helpers -------------------------------------------------------------- */

static const char *or_null(const char *s)
{
    return *s ? s : NULL;
}

/* syscalls.mount ("" for None) */
static void do_mount(const char *source, const char *target, const char *fstype,
                     unsigned long flags, const char *data)
{
    if (mount(or_null(source), target, or_null(fstype), flags, or_null(data)) < 0) {
        int e = errno;
        char a[PATH_MAX * 2], b[PATH_MAX * 2], c[256], d[PATH_MAX * 2];
        fail_call(e, "mount(%s, %s, %s, 0x%lx, %s)", pyrepr(or_null(source), a, sizeof a),
                  pyrepr(target, b, sizeof b), pyrepr(or_null(fstype), c, sizeof c), flags,
                  pyrepr(or_null(data), d, sizeof d));
    }
}

static int mount_setattr_at(const char *path, uint64_t set, uint64_t clr)
{
    struct mount_attr_arg attr = {set, clr, 0, 0};
    return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr);
}

static void fail_setattr(const char *path, uint64_t set, uint64_t clr)
{
    int e = errno;
    char a[PATH_MAX * 2];
    fail_call(e, "mount_setattr(%s, set=0x%llx, clr=0x%llx)", pyrepr(path, a, sizeof a),
              (unsigned long long)set, (unsigned long long)clr);
}

static unsigned long kept_flags(const char *path)
{
    struct statvfs st;
    CHECK(statvfs(path, &st));
    return st.f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
}

/* rootfs.remount_readonly */
static void remount_readonly(const char *path)
{
    do_mount("", path, "", MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags(path), "");
}

static void unescape(char *s)
{
    char *out = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7'
            && s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *out++ = *s++;
        }
    }
    *out = '\0';
}

static int by_length(const void *a, const void *b)
{
    size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
    return la < lb ? -1 : la > lb;
}

/* rootfs.remount_readonly_tree: `target` and every mount below it. */
static void remount_readonly_tree(const char *path)
{
    char target[PATH_MAX];
    if (!realpath(path, target))
        fail_errno(errno);
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        fail_errno(errno);
    size_t cap = 256, n = 0;
    char **points = malloc(cap * sizeof *points);
    char *line = NULL;
    size_t line_size = 0;
    size_t tlen = strlen(target);
    while (points && getline(&line, &line_size, f) > 0) {
        char *save, *field = strtok_r(line, " ", &save);
        for (int i = 0; field && i < 4; i++)
            field = strtok_r(NULL, " ", &save);
        if (!field)
            continue;
        unescape(field);
        int below = strcmp(field, target) == 0 || strcmp(target, "/") == 0
                    || (strncmp(field, target, tlen) == 0 && field[tlen] == '/');
        if (!below)
            continue;
        int seen = 0;
        for (size_t i = 0; i < n; i++)
            seen |= strcmp(points[i], field) == 0;
        if (!seen) {
            if (n == cap)
                points = realloc(points, (cap *= 2) * sizeof *points);
            if (points)
                points[n++] = strdup(field);
        }
    }
    fclose(f);
    if (!points)
        fail_errno(ENOMEM);
    qsort(points, n, sizeof *points, by_length);
    for (size_t i = 0; i < n; i++)
        remount_readonly(points[i]);
}

/* host_view.read_only */
static void read_only(const char *path)
{
    if (mount_setattr_at(path, MOUNT_ATTR_RDONLY, 0) == 0)
        return;
    if (errno != ENOSYS && errno != EINVAL)
        fail_setattr(path, MOUNT_ATTR_RDONLY, 0);
    remount_readonly_tree(path);
}

/* host_view._bind_writable */
static void bind_writable(const char *source, const char *target)
{
    do_mount(source, target, "", MS_BIND | MS_REC, "");
    if (mount_setattr_at(target, 0, MOUNT_ATTR_RDONLY) == 0)
        return;
    if (errno != ENOSYS && errno != EINVAL)
        fail_setattr(target, 0, MOUNT_ATTR_RDONLY);
    do_mount("", target, "", MS_BIND | MS_REMOUNT | kept_flags(target), "");
}

/* os.makedirs(path, mode, exist_ok=True) */
static void makedirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf)
        fail_errno(ENAMETOOLONG);
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            fail_errno(errno);
        *p = '/';
    }
    if (mkdir(buf, mode) < 0) {
        struct stat st;
        if (errno != EEXIST || stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
            fail_errno(errno == EEXIST ? EEXIST : errno);
    }
}

#define COVER_FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* host_view._cover */
static void cover(const char *path, const char *way)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        if (lstat(path, &st) < 0)
            return;  /* missing: nothing to hide */
        st.st_mode = 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        do_mount("/dev/null", path, "", MS_BIND, "");
        do_mount("", path, "", MS_BIND | MS_REMOUNT | MS_RDONLY | COVER_FLAGS, "");
        return;
    }
    do_mount("tmpfs", path, "tmpfs", COVER_FLAGS, "mode=755,size=64k,nr_inodes=256");
    if (*way && strcmp(way, ".") != 0) {
        char inner[PATH_MAX];
        snprintf(inner, sizeof inner, "%s/%s", path, way);
        makedirs(inner, 0755);
    }
    do_mount("", path, "", MS_BIND | MS_REMOUNT | MS_RDONLY | COVER_FLAGS, "");
}

/* rootfs.mount_sys */
static void mount_sys(const char *root, const char *staging)
{
    char target[PATH_MAX];
    snprintf(target, sizeof target, "%s/sys", strcmp(root, "/") == 0 ? "" : root);
    makedirs(target, 0777);
    unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount("sysfs", target, "sysfs", MS_RDONLY | flags, NULL) == 0)
        return;
    makedirs(staging, 0777);
    if (mount("sysfs", staging, "sysfs", flags, NULL) < 0) {
        do_mount("/sys", target, "", MS_BIND | MS_REC, "");
        remount_readonly_tree(target);
        return;
    }
    remount_readonly(staging);
    do_mount(staging, target, "", MS_MOVE, "");
}

/* rootfs.mask_paths, one path of MASKED */
static void mask(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return;
        fail_errno(errno);
    }
    if (S_ISDIR(st.st_mode))
        do_mount("tmpfs", path, "tmpfs", MS_RDONLY, "mode=0555");
    else
        do_mount("/dev/null", path, "", MS_BIND, "");
}

/* rootfs.mask_paths, one path of READONLY */
static void readonly_path(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    do_mount(path, path, "", MS_BIND | MS_REC, "");
    remount_readonly(path);
}

/* syscalls.link_up("lo") */
static void lo_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(s);
    struct ifreq req;
    memset(&req, 0, sizeof req);
    strcpy(req.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &req) < 0 || (req.ifr_flags |= IFF_UP,
                                             ioctl(s, SIOCSIFFLAGS, &req) < 0)) {
        int e = errno;
        fail_with(EXIT_SETUP_FAILED, "%s: bring lo up: %s", step, strerror(e));
    }
    close(s);
}

/* launch._write_proc; `optional`: a file this kernel lacks is skipped. */
static void write_file(const char *path, const char *value, int optional)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 && optional && errno == ENOENT)
        return;
    CHECK(fd);
    if (write(fd, value, strlen(value)) < 0)
        fail_errno(errno);
    close(fd);
}

/* capabilities.drop_to, with the user switch of identity.assume. */
static int last_cap(void)
{
    int cap = 0;
    while (cap < 63 && prctl(PR_CAPBSET_READ, cap + 1, 0, 0, 0) >= 0)
        cap++;
    return cap;
}

static void capget2(struct __user_cap_data_struct data[2])
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    if (syscall(SYS_capget, &header, data) < 0)
        fail_call(errno, "capget");
}

static void drop_to(uint64_t keep, int switch_user, uid_t uid, gid_t gid,
                    const gid_t *groups, size_t ngroups)
{
    struct __user_cap_data_struct data[2];
    capget2(data);
    uint64_t permitted = data[0].permitted | (uint64_t)data[1].permitted << 32;
    if (keep & ~permitted) {
        int last = last_cap();
        uint64_t known = last >= 63 ? ~0ULL : (1ULL << (last + 1)) - 1;
        if (keep & ~permitted & known)
            fail_with(EXIT_SETUP_FAILED, "%s: the agent lacks capabilities the task's "
                      "capabilities (--cap-add) ask for; refused as runc refuses it "
                      "(unable to apply caps: operation not permitted)", step);
    }
    for (int cap = 0; cap <= 63; cap++) {
        if (keep >> cap & 1)
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno != EINVAL)
                fail_call(errno, "prctl(%d, %d)", PR_CAPBSET_DROP, cap);
            break;
        }
    }
    do_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);
    if (switch_user) {
        do_prctl(PR_SET_KEEPCAPS, 1);
        CHECK(setgroups(ngroups, groups));
        CHECK(setresgid(gid, gid, gid));
        CHECK(setresuid(uid, uid, uid));
        do_prctl(PR_SET_KEEPCAPS, 0);
    }
    capget2(data);
    permitted = data[0].permitted | (uint64_t)data[1].permitted << 32;
    keep &= permitted;
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    data[0].effective = data[0].permitted = (uint32_t)keep;
    data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
    data[0].inheritable = data[1].inheritable = 0;
    if (syscall(SYS_capset, &header, data) < 0)
        fail_call(errno, "capset(eff=0x%llx, prm=0x%llx, inh=0x0)", (unsigned long long)keep,
                  (unsigned long long)keep);
}

/* process._missing_interpreter */
static const char *missing_interpreter(const char *name, const char *path)
{
    static char words[512];
    char candidate[PATH_MAX];
    const char *dirs = path;
    for (;;) {
        if (strchr(name, '/')) {
            snprintf(candidate, sizeof candidate, "%s", name);
        } else {
            const char *colon = strchrnul(dirs, ':');
            int len = (int)(colon - dirs);
            snprintf(candidate, sizeof candidate, "%.*s/%s", len ? len : 1,
                     len ? dirs : ".", name);
            dirs = *colon ? colon + 1 : NULL;
        }
        int fd = open(candidate, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            char head[257];
            ssize_t n = read(fd, head, 256);
            close(fd);
            if (n >= 0) {
                head[n] = '\0';
                if (n >= 2 && head[0] == '#' && head[1] == '!') {
                    /* Python's line.strip().split()[0]: any whitespace */
                    char *line = head + 2;
                    line[strcspn(line, "\n")] = '\0';
                    while (*line && isspace((unsigned char)*line))
                        line++;
                    line[strcspn(line, " \t\r\v\f")] = '\0';
                    char quoted[300];
                    snprintf(words, sizeof words, " (its interpreter %s, named on its "
                             "'#!' line, is missing)", pyrepr(line, quoted, sizeof quoted));
                    return words;
                }
                if (n >= 4 && memcmp(head, "\177ELF", 4) == 0)
                    return " (its ELF interpreter, the dynamic loader, is missing)";
                return "";
            }
        }
        if (strchr(name, '/') || !dirs)
            return "";
    }
}

/* os.execvpe with the task's PATH (process.execute): the first error that
 * is not "not found" wins, as Python's _execvpe. */
static void exec_task(char **argv, char **envp)
{
    const char *name = argv[0];
    const char *path = "/bin:/usr/bin";  /* os.defpath */
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    int saved = 0, last = ENOENT;
    if (strchr(name, '/')) {
        execve(name, argv, envp);
        last = errno;
    } else {
        const char *dirs = path;
        while (dirs) {
            const char *colon = strchrnul(dirs, ':');
            int len = (int)(colon - dirs);
            char candidate[PATH_MAX];
            snprintf(candidate, sizeof candidate, "%.*s/%s", len ? len : 1,
                     len ? dirs : ".", name);
            execve(candidate, argv, envp);
            last = errno;
            if (last != ENOENT && last != ENOTDIR && !saved)
                saved = last;
            dirs = *colon ? colon + 1 : NULL;
        }
    }
    int e = saved ? saved : last;
    int code = (e == ENOENT || e == ENOTDIR) ? EXIT_NOT_FOUND : EXIT_NOT_EXECUTABLE;
    char quoted[PATH_MAX * 2];
    fail_with(code, "exec %s: %s%s", pyrepr(name, quoted, sizeof quoted), strerror(e),
              e == ENOENT ? missing_interpreter(name, path) : "");
}

/* identity.clean_for_exec */
static void clean_for_exec(void)
{
    /* rt_sigaction itself: glibc's wrappers refuse its own two signals (32
     * and 33), which its posix_spawn leaves ignored. */
    struct { void (*handler)(int); unsigned long flags; void (*restorer)(void);
             uint64_t mask; } dfl = {SIG_DFL, 0, NULL, 0};
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Every fd above 2 but the error pipe (CLOEXEC: its EOF says the exec
     * succeeded). close_range(2) is Linux 5.9; before it, one by one. */
    if (err_fd > 3 && syscall(SYS_close_range, 3U, (unsigned)err_fd - 1, 0U) < 0)
        for (int fd = 3; fd < err_fd; fd++)
            close(fd);
    int above = err_fd >= 3 ? err_fd + 1 : 3;
    if (syscall(SYS_close_range, (unsigned)above, ~0U, 0U) < 0)
        for (int fd = above; fd < 65536; fd++)
            close(fd);
}

/* -- the steps ------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: juggler-init PLAN_FD ERR_FD (started by a juggler executor)\n");
        return 2;
    }
    err_fd = (int)strtol(argv[2], NULL, 10);
    fcntl(err_fd, F_SETFD, FD_CLOEXEC);
    read_plan((int)strtol(argv[1], NULL, 10));

    static char *fields[MAX_FIELDS + 1];
    static char *task_argv[MAX_FIELDS + 1];
    static char *task_env[MAX_FIELDS + 1];
    int stdio[3] = {-1, -1, -1};
    int sandbox_fd = -1;
    int count;
    while ((count = next_step(fields)) > 0) {
        const char *op = fields[0];
#define ARGS(n) do { if (count != (n) + 1) fail_with(EXIT_SETUP_FAILED, \
        "container setup: %s takes %d arguments", op, (n)); } while (0)
        if (strcmp(op, "step") == 0) {
            ARGS(1);
            snprintf(step, sizeof step, "%s", fields[1]);
        } else if (strcmp(op, "umask") == 0) {
            ARGS(1);
            umask((mode_t)number(fields[1]));
        } else if (strcmp(op, "write") == 0) {
            ARGS(3);
            write_file(fields[1], fields[2], (int)number(fields[3]));
        } else if (strcmp(op, "setsid") == 0) {
            CHECK(setsid());
        } else if (strcmp(op, "setns") == 0) {
            ARGS(2);
            int fd = (int)number(fields[1]), type = (int)number(fields[2]);
            if (setns(fd, type) < 0)
                fail_call(errno, "setns(%d, 0x%x)", fd, type);
            close(fd);
        } else if (strcmp(op, "unshare") == 0) {
            ARGS(1);
            int flags = (int)number(fields[1]);
            if (unshare(flags) < 0)
                fail_call(errno, "unshare(0x%x)", flags);
        } else if (strcmp(op, "hostname") == 0) {
            ARGS(1);
            if (sethostname(fields[1], strlen(fields[1])) < 0) {
                int e = errno;
                char a[1024];
                fail_call(e, "sethostname(%s)", pyrepr(fields[1], a, sizeof a));
            }
        } else if (strcmp(op, "lo_up") == 0) {
            lo_up();
        } else if (strcmp(op, "open_stdio") == 0) {  /* /dev/null, stdout, stderr */
            ARGS(3);
            CHECK(stdio[0] = open(fields[1], O_RDONLY));
            CHECK(stdio[1] = open(fields[2], O_WRONLY | O_CREAT | O_APPEND, 0644));
            CHECK(stdio[2] = open(fields[3], O_WRONLY | O_CREAT | O_APPEND, 0644));
        } else if (strcmp(op, "stdio_fds") == 0) {
            ARGS(3);
            for (int i = 0; i < 3; i++)
                stdio[i] = (int)number(fields[i + 1]);
        } else if (strcmp(op, "mount") == 0) {
            ARGS(5);
            do_mount(fields[1], fields[2], fields[3], (unsigned long)number(fields[4]),
                     fields[5]);
        } else if (strcmp(op, "open_sandbox") == 0) {
            ARGS(1);
            CHECK(sandbox_fd = open(fields[1], O_PATH | O_DIRECTORY | O_CLOEXEC));
        } else if (strcmp(op, "read_only") == 0) {
            ARGS(1);
            read_only(fields[1]);
        } else if (strcmp(op, "cover") == 0) {
            ARGS(2);
            cover(fields[1], fields[2]);
        } else if (strcmp(op, "bind_writable") == 0) {  /* "" source: the open sandbox */
            ARGS(2);
            char source[64];
            if (!*fields[1])
                snprintf(source, sizeof source, "/proc/self/fd/%d", sandbox_fd);
            bind_writable(*fields[1] ? fields[1] : source, fields[2]);
        } else if (strcmp(op, "close_sandbox") == 0) {
            if (sandbox_fd >= 0)
                close(sandbox_fd);
            sandbox_fd = -1;
        } else if (strcmp(op, "makedirs") == 0) {
            ARGS(2);
            makedirs(fields[1], (mode_t)number(fields[2]));
        } else if (strcmp(op, "mkdir") == 0) {
            ARGS(2);
            CHECK(mkdir(fields[1], (mode_t)number(fields[2])));
        } else if (strcmp(op, "mknod") == 0) {  /* as runc makes them: 0666, root's */
            ARGS(3);
            CHECK(mknod(fields[1], S_IFCHR | 0666,
                        makedev(number(fields[2]), number(fields[3]))));
            CHECK(chmod(fields[1], 0666));
            CHECK(chown(fields[1], 0, 0));
        } else if (strcmp(op, "symlink") == 0) {
            ARGS(2);
            CHECK(symlink(fields[1], fields[2]));
        } else if (strcmp(op, "symlink_absent") == 0) {
            ARGS(2);
            struct stat st;
            if (lstat(fields[2], &st) < 0)
                CHECK(symlink(fields[1], fields[2]));
        } else if (strcmp(op, "mount_sys") == 0) {
            ARGS(2);
            mount_sys(fields[1], fields[2]);
        } else if (strcmp(op, "mask") == 0) {
            ARGS(1);
            mask(fields[1]);
        } else if (strcmp(op, "readonly_path") == 0) {
            ARGS(1);
            readonly_path(fields[1]);
        } else if (strcmp(op, "require_dir") == 0) {  /* a path, and the message if absent */
            ARGS(2);
            struct stat st;
            if (stat(fields[1], &st) < 0 || !S_ISDIR(st.st_mode))
                fail_with(EXIT_SETUP_FAILED, "%s", fields[2]);
        } else if (strcmp(op, "chdir") == 0) {
            ARGS(1);
            CHECK(chdir(fields[1]));
        } else if (strcmp(op, "rlimit") == 0) {
            /* resource, soft, hard (-1: unlimited), words after the error */
            ARGS(4);
            long soft = number(fields[2]), hard = number(fields[3]);
            struct rlimit rl = {soft < 0 ? RLIM_INFINITY : (rlim_t)soft,
                                hard < 0 ? RLIM_INFINITY : (rlim_t)hard};
            if (setrlimit((int)number(fields[1]), &rl) < 0) {
                /* CPython's resource.setrlimit words (ValueError) for these two */
                int e = errno;
                const char *why = e == EPERM ? "not allowed to raise maximum limit"
                                  : e == EINVAL ? "current limit exceeds maximum limit"
                                  : strerror(e);
                fail_with(EXIT_SETUP_FAILED, "%s: %s%s", step, why, fields[4]);
            }
        } else if (strcmp(op, "caps") == 0) {  /* keep, switch?, uid, gid, groups... */
            if (count < 5)
                fail_with(EXIT_SETUP_FAILED, "container setup: caps takes 4 arguments");
            static gid_t groups[MAX_FIELDS];
            size_t n = 0;
            for (int i = 5; i < count; i++)
                groups[n++] = (gid_t)number(fields[i]);
            drop_to(strtoull(fields[1], NULL, 10), (int)number(fields[2]),
                    (uid_t)number(fields[3]), (gid_t)number(fields[4]), groups, n);
        } else if (strcmp(op, "no_new_privs") == 0) {
            do_prctl(PR_SET_NO_NEW_PRIVS, 1);
        } else if (strcmp(op, "wait_go") == 0) {  /* the executor's "go" */
            ARGS(1);
            int fd = (int)number(fields[1]);
            char go[2];
            ssize_t r;
            do
                r = read(fd, go, 2);
            while (r < 0 && errno == EINTR);
            if (r < 0)
                fail_errno(errno);
            if (r == 0)  /* process.SetupError's words, without the step's name */
                fail_with(EXIT_SETUP_FAILED, "the executor went away before the launch");
            close(fd);
        } else if (strcmp(op, "join") == 0) {  /* a cgroup's join file: write "0" */
            ARGS(1);
            int fd = (int)number(fields[1]);
            if (write(fd, "0", 1) < 0)
                fail_errno(errno);
            close(fd);
        } else if (strcmp(op, "dup_stdio") == 0) {
            for (int i = 0; i < 3; i++)
                CHECK(dup2(stdio[i], i));
            for (int i = 0; i < 3; i++)
                if (stdio[i] > 2 && (i == 0 || stdio[i] != stdio[i - 1]))
                    close(stdio[i]);
        } else if (strcmp(op, "argv") == 0) {
            for (int i = 1; i < count; i++)
                task_argv[i - 1] = strdup(fields[i]);
            task_argv[count - 1] = NULL;
        } else if (strcmp(op, "env") == 0) {
            for (int i = 1; i < count; i++)
                task_env[i - 1] = strdup(fields[i]);
            task_env[count - 1] = NULL;
        } else if (strcmp(op, "exec") == 0) {
            if (!task_argv[0])
                fail_with(EXIT_SETUP_FAILED, "container setup: no command");
            clean_for_exec();
            exec_task(task_argv, task_env);
        } else {
            fail_with(EXIT_SETUP_FAILED, "container setup: unknown step %s in the plan", op);
        }
    }
    fail_with(EXIT_SETUP_FAILED, "container setup: the plan ends without exec");
}
