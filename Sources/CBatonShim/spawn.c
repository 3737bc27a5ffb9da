// Starting a worker: a child that shares the supervisor's memory until execve (as
// posix_spawn starts one), then in the child only async-signal-safe code until execve
// (signals reset, descriptors placed at 3..., limits, credentials), with a failing step
// reported to the parent through a close-on-exec pipe.
#include "CBatonShim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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

struct baton_child_start {
    const baton_spawn_request *request;
    int report_fd;
};

static int baton_child_entry(void *argument) {
    struct baton_child_start *start = argument;
    baton_child(start->request, start->report_fd);
    return 127;
}

int baton_spawn(const baton_spawn_request *request, pid_t *pid, int *failed_step) {
    *failed_step = BATON_SPAWN_FORK;
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        return errno;
    }
    // The child runs on a stack of its own in the supervisor's memory (CLONE_VM) while
    // the calling thread waits for its execve or exit (CLONE_VFORK): no copy of the
    // supervisor's page tables for a child that replaces them at once, which fork
    // cost at every worker start. The child writes only its stack, the report pipe and
    // the environment entry made for its pid. A child that changes its credentials gets
    // a copy of the memory instead, as from fork: the kernel marks the memory of a
    // process whose uid or gid changes as not dumpable, and that must not be Baton's.
    int flags = request->change_credentials ? SIGCHLD : CLONE_VM | CLONE_VFORK | SIGCHLD;
    size_t stack_size = 64 * 1024 + (size_t)(request->fd_count > 0 ? request->fd_count : 0) * sizeof(int);
    stack_size = (stack_size + 4095) & ~(size_t)4095;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        int error = errno;
        close(report[0]);
        close(report[1]);
        return error;
    }
    // Every signal blocked, glibc's own included (the raw system call), until the child
    // has reset its dispositions: a handler of the supervisor's must never run in the
    // child, on memory the two share.
    uint64_t all = ~(uint64_t)0, previous = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &previous, sizeof(all));
    struct baton_child_start start = {.request = request, .report_fd = report[1]};
    pid_t child = clone(baton_child_entry, (char *)stack + stack_size, flags, &start);
    int clone_error = errno;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, NULL, sizeof(previous));
    munmap(stack, stack_size);
    close(report[1]);
    if (child < 0) {
        close(report[0]);
        return clone_error;
    }
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
