#include "CBatonShim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// --- spawning -------------------------------------------------------------------

// Only async-signal-safe calls from here until execve.
static void baton_child_fail(int report_fd, int error) {
    ssize_t ignored = write(report_fd, &error, sizeof(error));
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
    char *cursor = entry + strlen("LISTEN_PID=");
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

    if (request->new_process_group && setpgid(0, 0) != 0) {
        baton_child_fail(report_fd, errno);
    }
    if (request->directory != NULL && chdir(request->directory) != 0) {
        baton_child_fail(report_fd, errno);
    }
    if (request->stdout_fd >= 0 && dup2(request->stdout_fd, STDOUT_FILENO) < 0) {
        baton_child_fail(report_fd, errno);
    }
    if (request->stderr_fd >= 0 && dup2(request->stderr_fd, STDERR_FILENO) < 0) {
        baton_child_fail(report_fd, errno);
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
            baton_child_fail(report_fd, errno);
        }
    }
    for (int index = 0; index < request->fd_count; index++) {
        // dup2 clears FD_CLOEXEC on the target.
        if (dup2(moved[index], 3 + index) < 0) {
            baton_child_fail(report_fd, errno);
        }
    }
    // Everything else of the supervisor's closes at execve; the report pipe too,
    // which is how the parent learns that execve succeeded.
    if (syscall(SYS_close_range, 3 + request->fd_count, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        baton_child_fail(report_fd, errno);
    }
    if (request->listen_pid_index >= 0) {
        baton_child_write_pid(request->envp[request->listen_pid_index]);
    }
    execve(request->path, request->argv, request->envp);
    baton_child_fail(report_fd, errno);
}

int baton_spawn(const baton_spawn_request *request, pid_t *pid) {
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
    int child_error = 0;
    ssize_t count;
    do {
        count = read(report[0], &child_error, sizeof(child_error));
    } while (count < 0 && errno == EINTR);
    close(report[0]);
    *pid = child;
    if (count == (ssize_t)sizeof(child_error)) {
        // The child exits 127 and is reaped by the normal reaping path.
        return child_error;
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
