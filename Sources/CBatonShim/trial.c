// Running code that may abort (a parser's failed assertion) in a forked copy of Baton,
// so that it cannot take Baton down.
#include "CBatonShim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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
