// What Baton does to and for its own process: signals read as descriptors, reaping its
// children (and orphans, as a subreaper), descriptors kept from an execve of itself.
#include "CBatonShim.h"

#include <errno.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

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
