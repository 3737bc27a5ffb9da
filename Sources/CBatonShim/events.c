// What the supervisor's event loop waits on: an epoll instance and close-on-exec pipes.
#include "CBatonShim.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

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
