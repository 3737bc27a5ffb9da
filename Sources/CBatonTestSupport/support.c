#include "CBatonTestSupport.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <unistd.h>

int baton_enter_network_namespace(pid_t pid) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int result = setns(fd, CLONE_NEWNET) == 0 ? 0 : errno;
    close(fd);
    return result;
}

int baton_is_dumpable(void) {
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
}
