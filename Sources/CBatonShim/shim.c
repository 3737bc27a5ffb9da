#include "CBatonShim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// --- spawning -------------------------------------------------------------------

// Only async-signal-safe calls from here until execve.
static void baton_child_fail(int report_fd, int step, int error) {
    int report[2] = {error, step};
    ssize_t ignored = write(report_fd, report, sizeof(report));
    (void)ignored;
    _exit(127);
}

static void baton_child_write_pid(char *entry) {
    char digits[24];
    int count = 0;
    pid_t pid = getpid();
    do {
        digits[count++] = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid > 0);
    char *cursor = strchr(entry, '=') + 1;
    while (count > 0) {
        *cursor++ = digits[--count];
    }
    *cursor = '\0';
}

static void baton_child(const baton_spawn_request *request, int report_fd) {
    // Dispositions first, then the mask: a pending signal must not run a handler of
    // the parent's in the child.
    // The raw system call, because glibc's sigaction refuses the signals it reserves
    // for itself (32 and 33), which a parent may have set to ignored.
    struct {
        void *handler;
        unsigned long flags;
        void *restorer;
        unsigned long mask;
    } default_action = {.handler = SIG_DFL};
    for (int signal = 1; signal < NSIG; signal++) {
        syscall(SYS_rt_sigaction, signal, &default_action, NULL, sizeof(default_action.mask));
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);

    // A session of its own, not only a process group: a process can join a group of
    // its own session (setpgid) but never another session, so membership of the
    // worker's session proves descent from it (readiness attribution), and no process
    // from outside can enter the group Baton signals. It also leaves Baton's
    // controlling terminal: the terminal's signals are for Baton alone.
    if (request->new_session && setsid() < 0) {
        baton_child_fail(report_fd, BATON_SPAWN_SETUP, errno);
    }
    // Capabilities Baton was given as ambient ones (AmbientCapabilities=CAP_BPF, for its
    // steering program) are Baton's alone: a worker does not keep them across execve.
    // EINVAL: a kernel without ambient capabilities, where there is nothing to clear.
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
        baton_child_fail(report_fd, BATON_SPAWN_SETUP, errno);
    }
    if (request->stdout_fd >= 0 && dup2(request->stdout_fd, STDOUT_FILENO) < 0) {
        baton_child_fail(report_fd, BATON_SPAWN_DESCRIPTORS, errno);
    }
    if (request->stderr_fd >= 0 && dup2(request->stderr_fd, STDERR_FILENO) < 0) {
        baton_child_fail(report_fd, BATON_SPAWN_DESCRIPTORS, errno);
    }

    // Move every source above the target range first, so that placing one never
    // overwrites another that is still to be placed.
    int first_free = 3 + request->fd_count;
    if (report_fd >= first_free) {
        first_free = report_fd + 1;
    }
    int moved[request->fd_count > 0 ? request->fd_count : 1];
    for (int index = 0; index < request->fd_count; index++) {
        moved[index] = fcntl(request->fds[index], F_DUPFD_CLOEXEC, first_free);
        if (moved[index] < 0) {
            baton_child_fail(report_fd, BATON_SPAWN_DESCRIPTORS, errno);
        }
    }
    for (int index = 0; index < request->fd_count; index++) {
        // dup2 clears FD_CLOEXEC on the target.
        if (dup2(moved[index], 3 + index) < 0) {
            baton_child_fail(report_fd, BATON_SPAWN_DESCRIPTORS, errno);
        }
    }
    // Everything else of the supervisor's closes at execve; the report pipe too,
    // which is how the parent learns that execve succeeded.
    if (syscall(SYS_close_range, 3 + request->fd_count, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        baton_child_fail(report_fd, BATON_SPAWN_DESCRIPTORS, errno);
    }

    // Limits first: raising a hard limit needs the privilege the next steps give up.
    for (int index = 0; index < request->limit_count; index++) {
        struct rlimit limit = {.rlim_cur = request->limit_values[index], .rlim_max = request->limit_values[index]};
        if (setrlimit(request->limit_resources[index], &limit) != 0) {
            baton_child_fail(report_fd, BATON_SPAWN_SETRLIMIT, errno);
        }
    }
    // The raw system calls: they change this thread's credentials only, which is the
    // whole process in the child, with none of glibc's signalling of other threads.
    if (request->change_credentials) {
        if (syscall(SYS_setgroups, (size_t)request->group_count, request->groups) != 0) {
            baton_child_fail(report_fd, BATON_SPAWN_SETGROUPS, errno);
        }
        if (syscall(SYS_setresgid, request->gid, request->gid, request->gid) != 0) {
            baton_child_fail(report_fd, BATON_SPAWN_SETGID, errno);
        }
        if (syscall(SYS_setresuid, request->uid, request->uid, request->uid) != 0) {
            baton_child_fail(report_fd, BATON_SPAWN_SETUID, errno);
        }
    }
    // After the credentials: a change of them clears the parent-death signal.
    if (request->parent_death_signal > 0) {
        if (prctl(PR_SET_PDEATHSIG, request->parent_death_signal, 0, 0, 0) != 0) {
            baton_child_fail(report_fd, BATON_SPAWN_SETUP, errno);
        }
        // The parent died before the signal was asked for: it will never come.
        if (getppid() != request->parent_pid) {
            _exit(127);
        }
    }
    // As the worker's user: a directory only it may enter is fine, one it may not is not.
    if (request->directory != NULL && chdir(request->directory) != 0) {
        baton_child_fail(report_fd, BATON_SPAWN_CHDIR, errno);
    }
    if (request->umask >= 0) {
        umask((mode_t)request->umask);
    }
    if (request->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        baton_child_fail(report_fd, BATON_SPAWN_NO_NEW_PRIVILEGES, errno);
    }
    if (request->pid_variable_index >= 0) {
        baton_child_write_pid(request->envp[request->pid_variable_index]);
    }
    execve(request->path, request->argv, request->envp);
    baton_child_fail(report_fd, BATON_SPAWN_EXECVE, errno);
}

int baton_spawn(const baton_spawn_request *request, pid_t *pid, int *failed_step) {
    *failed_step = BATON_SPAWN_FORK;
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        return errno;
    }
    pid_t child = fork();
    if (child < 0) {
        int error = errno;
        close(report[0]);
        close(report[1]);
        return error;
    }
    if (child == 0) {
        close(report[0]);
        baton_child(request, report[1]);
    }
    close(report[1]);
    int child_report[2] = {0, 0};
    ssize_t count;
    do {
        count = read(report[0], child_report, sizeof(child_report));
    } while (count < 0 && errno == EINTR);
    close(report[0]);
    *pid = child;
    if (count == (ssize_t)sizeof(child_report)) {
        // The child exits 127 and is reaped by the normal reaping path.
        *failed_step = child_report[1];
        return child_report[0];
    }
    return 0;
}

// --- signals and children -------------------------------------------------------

int baton_signalfd(const int *signals, int count, int *fd) {
    sigset_t set;
    sigemptyset(&set);
    for (int index = 0; index < count; index++) {
        sigaddset(&set, signals[index]);
    }
    int error = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (error != 0) {
        return error;
    }
    int result = signalfd(-1, &set, SFD_CLOEXEC);
    if (result < 0) {
        return errno;
    }
    *fd = result;
    return 0;
}

int baton_reap(pid_t *pid, int *status) {
    int raw = 0;
    pid_t reaped;
    do {
        reaped = waitpid(-1, &raw, WNOHANG);
    } while (reaped < 0 && errno == EINTR);
    if (reaped < 0) {
        if (errno == ECHILD) {
            *pid = 0;
            return 0;
        }
        return errno;
    }
    *pid = reaped;
    if (reaped > 0) {
        *status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -WTERMSIG(raw);
    }
    return 0;
}

int baton_become_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : errno;
}

int baton_close_on_exec_from(int first) {
    return close_range((unsigned)first, ~0U, CLOSE_RANGE_CLOEXEC) == 0 ? 0 : errno;
}

// --- credentials ----------------------------------------------------------------

int baton_enable_credentials(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0 ? 0 : errno;
}

int baton_receive_with_credentials(int fd, char *buffer, size_t capacity, size_t *length, pid_t *pid) {
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 253)];
    } control;
    struct iovec vector = {.iov_base = buffer, .iov_len = capacity};
    struct msghdr message;
    memset(&message, 0, sizeof(message));
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = &control;
    message.msg_controllen = sizeof(control);

    ssize_t received;
    do {
        received = recvmsg(fd, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (received < 0 && errno == EINTR);
    if (received < 0) {
        return errno;
    }
    *length = (size_t)received;
    *pid = 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL;
         header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET) {
            continue;
        }
        if (header->cmsg_type == SCM_CREDENTIALS) {
            struct ucred credentials;
            memcpy(&credentials, CMSG_DATA(header), sizeof(credentials));
            *pid = credentials.pid;
        } else if (header->cmsg_type == SCM_RIGHTS) {
            // A worker may pass descriptors (FDSTORE=1); Baton keeps none of them.
            size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int passed[count > 0 ? count : 1];
            memcpy(passed, CMSG_DATA(header), count * sizeof(int));
            for (size_t index = 0; index < count; index++) {
                close(passed[index]);
            }
        }
    }
    return 0;
}

int baton_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred credentials;
    socklen_t size = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) {
        return errno;
    }
    *pid = credentials.pid;
    *uid = credentials.uid;
    *gid = credentials.gid;
    return 0;
}

int baton_set_group_acl(const char *path, const gid_t *groups, int group_count, int owner_group) {
    // The xattr form of an access ACL (linux/posix_acl_xattr.h): a version, then entries
    // sorted by tag and, within a tag, by id.
    enum { tag_user_obj = 0x01, tag_group_obj = 0x04, tag_group = 0x08, tag_mask = 0x10, tag_other = 0x20 };
    struct entry { uint16_t tag; uint16_t permissions; uint32_t id; };
    if (group_count < 0 || group_count > 16) return EINVAL;
    struct { uint32_t version; struct entry entries[20]; } acl;
    memset(&acl, 0, sizeof(acl));
    acl.version = 2;
    const uint32_t none = 0xFFFFFFFFu;
    const uint16_t read_write = 6;
    int count = 0;
    acl.entries[count++] = (struct entry){tag_user_obj, read_write, none};
    acl.entries[count++] = (struct entry){tag_group_obj, owner_group ? read_write : 0, none};
    gid_t sorted[16];
    memcpy(sorted, groups, sizeof(gid_t) * (size_t)group_count);
    for (int i = 1; i < group_count; i++) {
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            gid_t swap = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = swap;
        }
    }
    for (int index = 0; index < group_count; index++) {
        if (index > 0 && sorted[index] == sorted[index - 1]) continue;
        acl.entries[count++] = (struct entry){tag_group, read_write, sorted[index]};
    }
    acl.entries[count++] = (struct entry){tag_mask, read_write, none};
    acl.entries[count++] = (struct entry){tag_other, 0, none};
    size_t size = sizeof(uint32_t) + sizeof(struct entry) * (size_t)count;
    return setxattr(path, "system.posix_acl_access", &acl, size, 0) == 0 ? 0 : errno;
}

// --- sockets --------------------------------------------------------------------

int baton_accept_queue(int fd, uint32_t *depth, uint32_t *capacity) {
    struct tcp_info info;
    socklen_t size = sizeof(info);
    memset(&info, 0, sizeof(info));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) {
        return errno;
    }
    // On a listening socket these two fields hold the accept queue's length and limit.
    *depth = info.tcpi_unacked;
    *capacity = info.tcpi_sacked;
    return 0;
}

int baton_attach_migration_program(int fd) {
    // r0 = SK_PASS; exit. Passing without selecting a socket keeps the kernel's own
    // hash selection; the attach type is what turns on migration for the group.
    struct bpf_insn program[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = SK_PASS},
        {.code = BPF_JMP | BPF_EXIT},
    };
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.prog_type = BPF_PROG_TYPE_SK_REUSEPORT;
    attributes.expected_attach_type = BPF_SK_REUSEPORT_SELECT_OR_MIGRATE;
    attributes.insns = (uint64_t)(uintptr_t)program;
    attributes.insn_cnt = sizeof(program) / sizeof(program[0]);
    attributes.license = (uint64_t)(uintptr_t)"GPL";
    int program_fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attributes, sizeof(attributes));
    if (program_fd < 0) {
        return errno;
    }
    int result = setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &program_fd, sizeof(program_fd));
    int error = result == 0 ? 0 : errno;
    // The socket group holds its own reference to the program.
    close(program_fd);
    return error;
}

int baton_read_signal(int fd, int *signal) {
    struct signalfd_siginfo info;
    ssize_t count;
    do {
        count = read(fd, &info, sizeof(info));
    } while (count < 0 && errno == EINTR);
    if (count != (ssize_t)sizeof(info)) {
        return count < 0 ? errno : EIO;
    }
    *signal = (int)info.ssi_signo;
    return 0;
}

int baton_pipe(int ends[2]) {
    return pipe2(ends, O_CLOEXEC) == 0 ? 0 : errno;
}

int baton_epoll_create(int *epoll) {
    *epoll = epoll_create1(EPOLL_CLOEXEC);
    return *epoll >= 0 ? 0 : errno;
}

int baton_epoll_watch(int epoll, int fd, bool watch) {
    struct epoll_event event = { .events = EPOLLIN, .data.fd = fd };
    int result = watch ? epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) : epoll_ctl(epoll, EPOLL_CTL_DEL, fd, NULL);
    return result == 0 ? 0 : errno;
}

int baton_epoll_wait(int epoll, int *ready, int capacity) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int count;
    do {
        count = epoll_wait(epoll, events, capacity, -1);
    } while (count < 0 && errno == EINTR);
    if (count < 0) return -errno;
    for (int index = 0; index < count; index++) ready[index] = events[index].data.fd;
    return count;
}

// --- steering -------------------------------------------------------------------

static int baton_bpf(int command, union bpf_attr *attributes) {
    return (int)syscall(SYS_bpf, command, attributes, sizeof(*attributes));
}

static int baton_map_create(uint32_t type, uint32_t value_size, uint32_t entries, const char *name, int *fd) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_type = type;
    attributes.key_size = sizeof(uint32_t);
    attributes.value_size = value_size;
    attributes.max_entries = entries;
    strncpy(attributes.map_name, name, sizeof(attributes.map_name) - 1);
    *fd = baton_bpf(BPF_MAP_CREATE, &attributes);
    return *fd >= 0 ? 0 : errno;
}

static int baton_map_update(int map, uint32_t key, const void *value) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_fd = (uint32_t)map;
    attributes.key = (uint64_t)(uintptr_t)&key;
    attributes.value = (uint64_t)(uintptr_t)value;
    attributes.flags = BPF_ANY;
    return baton_bpf(BPF_MAP_UPDATE_ELEM, &attributes) == 0 ? 0 : errno;
}

static int baton_map_lookup(int map, uint32_t key, void *value) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_fd = (uint32_t)map;
    attributes.key = (uint64_t)(uintptr_t)&key;
    attributes.value = (uint64_t)(uintptr_t)value;
    return baton_bpf(BPF_MAP_LOOKUP_ELEM, &attributes) == 0 ? 0 : errno;
}

// Instructions, named as in the kernel's samples (tools/include/linux/filter.h).
#define STEER_MOV64_REG(dst, src) {.code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = dst, .src_reg = src}
#define STEER_MOV64_IMM(dst, value) {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = dst, .imm = value}
#define STEER_ADD64_IMM(dst, value) {.code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = dst, .imm = value}
#define STEER_MOD32_REG(dst, src) {.code = BPF_ALU | BPF_MOD | BPF_X, .dst_reg = dst, .src_reg = src}
#define STEER_LOAD32(dst, src, offset) {.code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = dst, .src_reg = src, .off = offset}
#define STEER_STORE32(dst, offset, src) {.code = BPF_STX | BPF_MEM | BPF_W, .dst_reg = dst, .src_reg = src, .off = offset}
#define STEER_STORE32_IMM(dst, offset, value) {.code = BPF_ST | BPF_MEM | BPF_W, .dst_reg = dst, .off = offset, .imm = value}
#define STEER_ATOMIC_ADD64(dst, src) {.code = BPF_STX | BPF_ATOMIC | BPF_DW, .dst_reg = dst, .src_reg = src, .imm = BPF_ADD}
// A 64-bit immediate takes two instructions; with BPF_PSEUDO_MAP_FD the kernel
// replaces the fd by its map.
#define STEER_LOAD_MAP(dst, map_fd) \
    {.code = BPF_LD | BPF_IMM | BPF_DW, .dst_reg = dst, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd}, {.code = 0}
#define STEER_CALL(helper) {.code = BPF_JMP | BPF_CALL, .imm = helper}
// Every conditional jump of the program goes to its end (`pass`); the offsets are
// filled in after the program is written.
#define STEER_IF_ZERO_PASS(reg) {.code = BPF_JMP | BPF_JEQ | BPF_K, .dst_reg = reg, .imm = 0}
#define STEER_IF_NONZERO_PASS(reg) {.code = BPF_JMP | BPF_JNE | BPF_K, .dst_reg = reg, .imm = 0}
// The one jump to the program's very end (`drop`): a 32-bit compare, told apart from
// the jumps to `pass` when the offsets are filled in.
#define STEER_IF_CLOSED_DROP(reg) {.code = BPF_JMP32 | BPF_JEQ | BPF_K, .dst_reg = reg, .imm = (int32_t)BATON_STEERING_CLOSED}
#define STEER_EXIT() {.code = BPF_JMP | BPF_EXIT}

static int baton_steering_load(const baton_steering *steering, char *failure, size_t failure_size, int *fd) {
    struct bpf_insn program[] = {
        // r6 = ctx (r1 is overwritten by every call).
        STEER_MOV64_REG(BPF_REG_6, BPF_REG_1),

        // r7 = count[0]. No rotation yet: pass, and the kernel hashes over the group.
        STEER_STORE32_IMM(BPF_REG_10, -4, 0),
        STEER_MOV64_REG(BPF_REG_2, BPF_REG_10),
        STEER_ADD64_IMM(BPF_REG_2, -4),
        STEER_LOAD_MAP(BPF_REG_1, steering->count),
        STEER_CALL(BPF_FUNC_map_lookup_elem),
        STEER_IF_ZERO_PASS(BPF_REG_0),
        STEER_LOAD32(BPF_REG_7, BPF_REG_0, 0),
        STEER_IF_ZERO_PASS(BPF_REG_7),
        // The group is closing: drop.
        STEER_IF_CLOSED_DROP(BPF_REG_7),

        // r8 = ctx->hash % count (32-bit), the index in the rotation.
        STEER_LOAD32(BPF_REG_8, BPF_REG_6, offsetof(struct sk_reuseport_md, hash)),
        STEER_MOD32_REG(BPF_REG_8, BPF_REG_7),

        // r8 = rotation[index], the slot in the socket array; kept at fp-8 as a key.
        STEER_STORE32(BPF_REG_10, -4, BPF_REG_8),
        STEER_MOV64_REG(BPF_REG_2, BPF_REG_10),
        STEER_ADD64_IMM(BPF_REG_2, -4),
        STEER_LOAD_MAP(BPF_REG_1, steering->rotation),
        STEER_CALL(BPF_FUNC_map_lookup_elem),
        STEER_IF_ZERO_PASS(BPF_REG_0),
        STEER_LOAD32(BPF_REG_8, BPF_REG_0, 0),
        STEER_STORE32(BPF_REG_10, -8, BPF_REG_8),

        // bpf_sk_select_reuseport(ctx, sockets, &slot, 0); on failure (an empty slot),
        // pass and let the kernel choose.
        STEER_MOV64_REG(BPF_REG_1, BPF_REG_6),
        STEER_LOAD_MAP(BPF_REG_2, steering->sockets),
        STEER_MOV64_REG(BPF_REG_3, BPF_REG_10),
        STEER_ADD64_IMM(BPF_REG_3, -8),
        STEER_MOV64_IMM(BPF_REG_4, 0),
        STEER_CALL(BPF_FUNC_sk_select_reuseport),
        STEER_IF_NONZERO_PASS(BPF_REG_0),

        // counters[slot] += 1, atomically.
        STEER_MOV64_REG(BPF_REG_2, BPF_REG_10),
        STEER_ADD64_IMM(BPF_REG_2, -8),
        STEER_LOAD_MAP(BPF_REG_1, steering->counters),
        STEER_CALL(BPF_FUNC_map_lookup_elem),
        STEER_IF_ZERO_PASS(BPF_REG_0),
        STEER_MOV64_IMM(BPF_REG_1, 1),
        STEER_ATOMIC_ADD64(BPF_REG_0, BPF_REG_1),

        // pass: return SK_PASS, with or without a selected socket.
        STEER_MOV64_IMM(BPF_REG_0, SK_PASS),
        STEER_EXIT(),

        // drop: return SK_DROP.
        STEER_MOV64_IMM(BPF_REG_0, SK_DROP),
        STEER_EXIT(),
    };
    int count = (int)(sizeof(program) / sizeof(program[0]));
    int pass = count - 4;
    int drop = count - 2;
    for (int index = 0; index < pass; index++) {
        uint8_t code = program[index].code;
        if (BPF_CLASS(code) == BPF_JMP && (BPF_OP(code) == BPF_JEQ || BPF_OP(code) == BPF_JNE)) {
            program[index].off = (int16_t)(pass - (index + 1));
        } else if (BPF_CLASS(code) == BPF_JMP32 && BPF_OP(code) == BPF_JEQ) {
            program[index].off = (int16_t)(drop - (index + 1));
        }
    }

    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.prog_type = BPF_PROG_TYPE_SK_REUSEPORT;
    attributes.expected_attach_type = BPF_SK_REUSEPORT_SELECT_OR_MIGRATE;
    attributes.insns = (uint64_t)(uintptr_t)program;
    attributes.insn_cnt = (uint32_t)count;
    attributes.license = (uint64_t)(uintptr_t)"GPL";
    strncpy(attributes.prog_name, "baton_steer", sizeof(attributes.prog_name) - 1);
    *fd = baton_bpf(BPF_PROG_LOAD, &attributes);
    if (*fd >= 0) {
        return 0;
    }
    int error = errno;
    // Load again with the verifier's log, whose last line says why.
    enum { log_size = 16384 };
    char *log = malloc(log_size);
    if (log == NULL) {
        snprintf(failure, failure_size, "BPF_PROG_LOAD");
        return error;
    }
    log[0] = '\0';
    attributes.log_buf = (uint64_t)(uintptr_t)log;
    attributes.log_size = log_size;
    attributes.log_level = 1;
    int retried = baton_bpf(BPF_PROG_LOAD, &attributes);
    if (retried >= 0) {
        close(retried);
    }
    // The log ends with a line of statistics ("processed N insns ..."); the reason is
    // the line before it.
    const char *reason = "";
    for (int line = 0; line < 2; line++) {
        size_t length = strnlen(log, log_size);
        while (length > 0 && log[length - 1] == '\n') {
            log[--length] = '\0';
        }
        char *last = strrchr(log, '\n');
        reason = last != NULL ? last + 1 : log;
        if (strncmp(reason, "processed ", strlen("processed ")) != 0 || last == NULL) {
            break;
        }
        *last = '\0';
    }
    snprintf(failure, failure_size, "BPF_PROG_LOAD: %s", reason);
    free(log);
    return error;
}

int baton_steering_create(uint32_t capacity, baton_steering *steering, char *failure, size_t failure_size) {
    baton_steering made = {.program = -1, .sockets = -1, .rotation = -1, .count = -1, .counters = -1,
                           .capacity = capacity};
    int error = 0;
    const char *step = NULL;
    if ((error = baton_map_create(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, sizeof(uint64_t), capacity,
                                  "baton_sockets", &made.sockets)) != 0) {
        step = "BPF_MAP_CREATE reuseport socket array";
    } else if ((error = baton_map_create(BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), capacity,
                                         "baton_rotation", &made.rotation)) != 0) {
        step = "BPF_MAP_CREATE rotation array";
    } else if ((error = baton_map_create(BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), 1,
                                         "baton_count", &made.count)) != 0) {
        step = "BPF_MAP_CREATE count array";
    } else if ((error = baton_map_create(BPF_MAP_TYPE_ARRAY, sizeof(uint64_t), capacity,
                                         "baton_counters", &made.counters)) != 0) {
        step = "BPF_MAP_CREATE counter array";
    } else {
        error = baton_steering_load(&made, failure, failure_size, &made.program);
    }
    if (step != NULL) {
        snprintf(failure, failure_size, "%s", step);
    }
    if (error != 0) {
        baton_steering_close(&made);
        return error;
    }
    *steering = made;
    return 0;
}

int baton_steering_attach(const baton_steering *steering, int socket_fd) {
    int program = steering->program;
    return setsockopt(socket_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &program, sizeof(program)) == 0 ? 0 : errno;
}

int baton_steering_place(const baton_steering *steering, uint32_t slot, int socket_fd) {
    uint64_t zero = 0;
    int error = baton_map_update(steering->counters, slot, &zero);
    if (error != 0) {
        return error;
    }
    uint64_t value = (uint64_t)socket_fd;
    return baton_map_update(steering->sockets, slot, &value);
}

int baton_steering_remove(const baton_steering *steering, uint32_t slot) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_fd = (uint32_t)steering->sockets;
    attributes.key = (uint64_t)(uintptr_t)&slot;
    return baton_bpf(BPF_MAP_DELETE_ELEM, &attributes) == 0 ? 0 : errno;
}

int baton_steering_occupant(const baton_steering *steering, uint32_t slot, uint64_t *cookie) {
    return baton_map_lookup(steering->sockets, slot, cookie);
}

int baton_steering_set_rotation(const baton_steering *steering, uint32_t index, uint32_t slot) {
    return baton_map_update(steering->rotation, index, &slot);
}

int baton_steering_set_count(const baton_steering *steering, uint32_t count) {
    return baton_map_update(steering->count, 0, &count);
}

int baton_steering_read_counter(const baton_steering *steering, uint32_t slot, uint64_t *selections) {
    return baton_map_lookup(steering->counters, slot, selections);
}

void baton_steering_close(baton_steering *steering) {
    int *fds[] = {&steering->program, &steering->sockets, &steering->rotation, &steering->count, &steering->counters};
    for (size_t index = 0; index < sizeof(fds) / sizeof(fds[0]); index++) {
        if (*fds[index] >= 0) {
            close(*fds[index]);
            *fds[index] = -1;
        }
    }
}

int baton_socket_cookie(int fd, uint64_t *cookie) {
    socklen_t size = sizeof(*cookie);
    return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &size) == 0 ? 0 : errno;
}

int baton_notify(const char *path, const char *message, int fd) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof(address.sun_path)) return EINVAL;
    memcpy(address.sun_path, path, length);
    socklen_t address_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + 1);
    if (path[0] == '@') {
        // An abstract name: a leading NUL, and no terminating one.
        address.sun_path[0] = 0;
        address_length -= 1;
    }
    int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sock < 0) return errno;
    struct iovec iov = { .iov_base = (void *)message, .iov_len = strlen(message) };
    union {
        char buffer[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr header = {
        .msg_name = &address, .msg_namelen = address_length, .msg_iov = &iov, .msg_iovlen = 1,
    };
    if (fd >= 0) {
        header.msg_control = control.buffer;
        header.msg_controllen = sizeof(control.buffer);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&header);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    }
    ssize_t sent = sendmsg(sock, &header, MSG_DONTWAIT | MSG_NOSIGNAL);
    int error = sent < 0 ? errno : 0;
    close(sock);
    return error;
}

// --- trials ---------------------------------------------------------------------

// In the copy only: where its fatal-signal handler reports the signal.
static int baton_trial_report_fd = -1;

static void baton_trial_fatal(int signal_number) {
    unsigned char report = (unsigned char)signal_number;
    ssize_t ignored = write(baton_trial_report_fd, &report, 1);
    (void)ignored;
    // SA_RESETHAND put the default action back: the copy ends by the same signal.
    raise(signal_number);
}

int baton_trial(void (*function)(const void *argument), const void *argument, int timeout_ms, int *outcome) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) return errno;
    pid_t child = fork();
    if (child < 0) {
        int error = errno;
        close(ends[0]);
        close(ends[1]);
        return error;
    }
    if (child == 0) {
        close(ends[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        // The caller's crash handlers (Swift's backtracer, a fuzzer's) are not for this
        // copy: a fatal signal is reported through the pipe and ends it. (The caller
        // may have a reaper that takes the copy's exit status before `waitpid` below.)
        baton_trial_report_fd = ends[1];
        static const int fatal[] = { SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS };
        struct sigaction report;
        memset(&report, 0, sizeof(report));
        report.sa_handler = baton_trial_fatal;
        report.sa_flags = SA_RESETHAND | SA_NODEFER;
        for (size_t index = 0; index < sizeof(fatal) / sizeof(fatal[0]); index++) {
            sigaction(fatal[index], &report, NULL);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        // What the code prints on its way down (an assertion's message) is not the
        // caller's to show: the caller reports the outcome in its own words.
        int quiet = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (quiet >= 0) {
            dup2(quiet, STDERR_FILENO);
            dup2(quiet, STDOUT_FILENO);
        }
        function(argument);
        unsigned char returned = 0;
        ssize_t ignored = write(ends[1], &returned, 1);
        (void)ignored;
        _exit(0);
    }
    close(ends[1]);
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    struct pollfd readable = { .fd = ends[0], .events = POLLIN };
    int ready;
    do {
        ready = poll(&readable, 1, timeout_ms);
    } while (ready < 0 && errno == EINTR);
    unsigned char report = 0;
    ssize_t count = 0;
    if (ready > 0) {
        do {
            count = read(ends[0], &report, 1);
        } while (count < 0 && errno == EINTR);
    }
    close(ends[0]);
    if (ready == 0 && pidfd >= 0) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    if (pidfd >= 0) close(pidfd);
    // Reaped here unless the caller's reaper was first (ECHILD).
    pid_t reaped;
    do {
        reaped = waitpid(child, NULL, 0);
    } while (reaped < 0 && errno == EINTR);
    if (ready == 0) {
        *outcome = BATON_TRIAL_TIMED_OUT;
    } else if (count == 1) {
        *outcome = report == 0 ? BATON_TRIAL_RETURNED : (int)report;
    } else {
        *outcome = BATON_TRIAL_VANISHED;
    }
    return 0;
}

// --- capabilities ---------------------------------------------------------------

int baton_keep_capabilities(uint64_t keep) {
    for (int capability = 0; capability < 64; capability++) {
        int present = prctl(PR_CAPBSET_READ, capability, 0, 0, 0);
        if (present < 0) break;  // EINVAL: past the kernel's last capability
        if (present == 0 || (keep >> capability) & 1) continue;
        if (prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0) return errno;
    }
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &header, data) != 0) return errno;
    for (int word = 0; word < 2; word++) {
        uint32_t kept = (uint32_t)(keep >> (32 * word));
        data[word].permitted &= kept;
        data[word].effective &= kept;
        data[word].inheritable = 0;
    }
    if (syscall(SYS_capset, &header, data) != 0) return errno;
    return 0;
}
