#include "CBatonPreload.h"
#include "inherited_sockets.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

// With BATON_PRELOAD_DRAIN_SIGNAL set, the drain signal reaches the server late: on
// arrival the library first stops the server accepting (every descriptor of an
// inherited listening socket now holds a fresh listening socket nobody connects to,
// and epoll no longer watches the real one), then lets BATON_PRELOAD_DRAIN_GRACE_MS pass
// (default 500), in which the server answers what it has already accepted, and only
// then runs the server's own handler (or its default action). A server that loses what
// it accepted but has not read yet when it shuts down, or stops threads in the middle of
// a response, so loses nothing: new connections all go to the next generation, which
// shares the socket. The server's sigaction() and signal() for the drain signal are
// recorded, not installed.

typedef int (*baton_sigaction_function)(int, const struct sigaction *, struct sigaction *);

static baton_sigaction_function baton_next_sigaction;
static int baton_drain_signal;
static long baton_drain_grace_ms = 500;
// What the server asked for the drain signal.
static struct sigaction baton_server_action;
static timer_t baton_drain_timer;
static volatile sig_atomic_t baton_draining;
// Set once the drain signal went to the server's own disposition, by whichever comes
// first: the grace timer's thread, or a second drain signal.
static volatile int baton_handed_back;

static void baton_deliver_to_server(int sig, siginfo_t *info, void *context) {
    struct sigaction action = baton_server_action;
    if (action.sa_flags & SA_SIGINFO) {
        siginfo_t made;
        if (info == NULL) {
            memset(&made, 0, sizeof(made));
            made.si_signo = sig;
            made.si_code = SI_USER;
            info = &made;
        }
        if (action.sa_sigaction != NULL) {
            action.sa_sigaction(sig, info, context);
        }
        return;
    }
    if (action.sa_handler == SIG_IGN) {
        return;
    }
    if (action.sa_handler == SIG_DFL) {
        struct sigaction fallback;
        memset(&fallback, 0, sizeof(fallback));
        fallback.sa_handler = SIG_DFL;
        baton_next_sigaction(sig, &fallback, NULL);
        raise(sig);
        return;
    }
    action.sa_handler(sig);
}

// Whether `fd` is an epoll instance (async-signal-safe: readlink only).
static int baton_is_epoll(int fd) {
    char path[32];
    char target[32];
    int length = 0;
    // "/proc/self/fd/<fd>" without snprintf, which is not async-signal-safe.
    const char *prefix = "/proc/self/fd/";
    while (prefix[length] != '\0') {
        path[length] = prefix[length];
        length++;
    }
    char digits[12];
    int count = 0;
    for (int value = fd; value > 0 || count == 0; value /= 10) {
        digits[count++] = (char)('0' + value % 10);
    }
    while (count > 0) {
        path[length++] = digits[--count];
    }
    path[length] = '\0';
    ssize_t size = readlink(path, target, sizeof(target) - 1);
    if (size <= 0) {
        return 0;
    }
    target[size] = '\0';
    return strcmp(target, "anon_inode:[eventpoll]") == 0;
}

// Puts a listening socket nobody connects to on every descriptor of an inherited stream
// socket, keeping each descriptor's close-on-exec and non-blocking flags.
static void baton_stop_accepting(void) {
    struct rlimit limit;
    int highest = 4096;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < (rlim_t)highest) {
        highest = (int)limit.rlim_cur;
    }
    int epolls[16];
    int epoll_count = 0;
    for (int fd = 0; fd < highest && epoll_count < 16; fd++) {
        if (baton_is_epoll(fd)) {
            epolls[epoll_count++] = fd;
        }
    }
    for (int fd = 0; fd < highest; fd++) {
        baton_preload_socket *entry = baton_preload_inherited(fd);
        if (entry == NULL || entry->type != SOCK_STREAM) {
            continue;
        }
        // epoll watches the socket itself, which stays open elsewhere: unwatch it.
        for (int index = 0; index < epoll_count; index++) {
            epoll_ctl(epolls[index], EPOLL_CTL_DEL, fd, NULL);
        }
        int dummy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (dummy < 0) {
            continue;
        }
        struct sockaddr_in loopback;
        memset(&loopback, 0, sizeof(loopback));
        loopback.sin_family = AF_INET;
        loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (baton_next_bind(dummy, (struct sockaddr *)&loopback, sizeof(loopback)) != 0 || baton_next_listen(dummy, 1) != 0) {
            close(dummy);
            continue;
        }
        int descriptor_flags = fcntl(fd, F_GETFD);
        // Non-blocking always: a server that accepts after poll() said "readable" (for
        // the real socket) must not block on this one.
        fcntl(dummy, F_SETFL, O_NONBLOCK);
        dup3(dummy, fd, (descriptor_flags >= 0 && (descriptor_flags & FD_CLOEXEC)) ? O_CLOEXEC : 0);
        close(dummy);
    }
}

static void baton_drain_handler(int sig, siginfo_t *info, void *context) {
    if (baton_draining) {
        // A second drain signal: no more grace.
        if (__atomic_exchange_n(&baton_handed_back, 1, __ATOMIC_SEQ_CST) == 0) {
            struct itimerspec never;
            memset(&never, 0, sizeof(never));
            timer_settime(baton_drain_timer, 0, &never, NULL);
        }
        baton_deliver_to_server(sig, info, context);
        return;
    }
    baton_draining = 1;
    int saved = errno;
    baton_stop_accepting();
    struct itimerspec when;
    memset(&when, 0, sizeof(when));
    when.it_value.tv_sec = baton_drain_grace_ms / 1000;
    when.it_value.tv_nsec = (baton_drain_grace_ms % 1000) * 1000000L;
    if (baton_drain_grace_ms <= 0 || timer_settime(baton_drain_timer, 0, &when, NULL) != 0) {
        baton_deliver_to_server(sig, info, context);
    }
    errno = saved;
}

// On a thread of the C library's, whatever the server's threads block: the server's
// own disposition comes back, and the signal goes to the process again, to be handled
// as the server asked, by a thread that does not block it.
static void baton_grace_over(union sigval value) {
    (void)value;
    if (__atomic_exchange_n(&baton_handed_back, 1, __ATOMIC_SEQ_CST) != 0) {
        return;
    }
    baton_next_sigaction(baton_drain_signal, &baton_server_action, NULL);
    kill(getpid(), baton_drain_signal);
}

void baton_drain_start(void) {
    baton_next_sigaction = (baton_sigaction_function)baton_preload_next("sigaction");
    const char *signal_text = getenv(BATON_PRELOAD_DRAIN_SIGNAL_VARIABLE);
    if (signal_text == NULL || baton_next_sigaction == NULL || baton_preload_inherited_count() == 0) {
        return;
    }
    int sig = (int)strtol(signal_text, NULL, 10);
    if (sig <= 0 || sig >= SIGRTMIN || sig == SIGKILL || sig == SIGSTOP) {
        return;
    }
    const char *grace_text = getenv(BATON_PRELOAD_DRAIN_GRACE_VARIABLE);
    if (grace_text != NULL) {
        baton_drain_grace_ms = strtol(grace_text, NULL, 10);
    }
    struct sigevent event;
    memset(&event, 0, sizeof(event));
    event.sigev_notify = SIGEV_THREAD;
    event.sigev_notify_function = baton_grace_over;
    if (timer_create(CLOCK_MONOTONIC, &event, &baton_drain_timer) != 0) {
        return;
    }
    struct sigaction ours;
    memset(&ours, 0, sizeof(ours));
    ours.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    baton_next_sigaction(sig, NULL, &baton_server_action);
    ours.sa_sigaction = baton_drain_handler;
    baton_next_sigaction(sig, &ours, NULL);
    baton_drain_signal = sig;
}

int sigaction(int sig, const struct sigaction *action, struct sigaction *old) {
    baton_sigaction_function next = baton_next_sigaction;
    if (next == NULL) {
        // Called by another library's constructor before ours ran.
        next = (baton_sigaction_function)baton_preload_next("sigaction");
    }
    if (baton_drain_signal != 0 && sig == baton_drain_signal && !__atomic_load_n(&baton_handed_back, __ATOMIC_SEQ_CST)) {
        if (old != NULL) {
            *old = baton_server_action;
        }
        if (action != NULL) {
            baton_server_action = *action;
        }
        return 0;
    }
    return next(sig, action, old);
}

sighandler_t signal(int sig, sighandler_t handler) {
    struct sigaction action;
    struct sigaction old;
    memset(&action, 0, sizeof(action));
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(sig, &action, &old) != 0) {
        return SIG_ERR;
    }
    return old.sa_handler;
}
