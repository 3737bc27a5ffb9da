// Dropping the capabilities Baton does not need.
#include "CBatonShim.h"

#include <errno.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

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
