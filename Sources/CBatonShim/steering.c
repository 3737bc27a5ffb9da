// The steering of a listener's SO_REUSEPORT group (Docs/steering.md): the maps, and the
// program compiled from bpf/steering.bpf.c, loaded without libbpf.
#include "CBatonShim.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

// How bpf/steering_program.h names the maps (after the program's `extern` maps).
typedef enum {
    BATON_STEERING_MAP_SOCKETS,
    BATON_STEERING_MAP_ROTATION,
    BATON_STEERING_MAP_COUNT,
    BATON_STEERING_MAP_COUNTERS,
    BATON_STEERING_MAP_SETTINGS,
    BATON_STEERING_MAP_FLOWS,
    BATON_STEERING_MAP_TAGS,
    BATON_STEERING_MAP_COOKIES,
    BATON_STEERING_MAP_DECISIONS,
} baton_steering_map;

// An instruction of the program that loads a map's descriptor.
typedef struct {
    baton_steering_map map;
    uint32_t instruction;
} baton_steering_map_load;

#include "bpf/steering_program.h"

static int baton_bpf(int command, union bpf_attr *attributes) {
    return (int)syscall(SYS_bpf, command, attributes, sizeof(*attributes));
}

static int baton_map_create_keyed(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t entries,
                                  const char *name, int *fd) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_type = type;
    attributes.key_size = key_size;
    attributes.value_size = value_size;
    attributes.max_entries = entries;
    strncpy(attributes.map_name, name, sizeof(attributes.map_name) - 1);
    *fd = baton_bpf(BPF_MAP_CREATE, &attributes);
    return *fd >= 0 ? 0 : errno;
}

static int baton_map_create(uint32_t type, uint32_t value_size, uint32_t entries, const char *name, int *fd) {
    return baton_map_create_keyed(type, sizeof(uint32_t), value_size, entries, name, fd);
}

static int baton_map_delete(int map, const void *key) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_fd = (uint32_t)map;
    attributes.key = (uint64_t)(uintptr_t)key;
    return baton_bpf(BPF_MAP_DELETE_ELEM, &attributes) == 0 ? 0 : errno;
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

static int baton_steering_load(const baton_steering *steering, char *failure, size_t failure_size, int *fd) {
    enum { count = sizeof(baton_steering_instructions) / sizeof(baton_steering_instructions[0]) };
    struct bpf_insn program[count];
    memcpy(program, baton_steering_instructions, sizeof(program));
    const int maps[] = {
        [BATON_STEERING_MAP_SOCKETS] = steering->sockets,
        [BATON_STEERING_MAP_ROTATION] = steering->rotation,
        [BATON_STEERING_MAP_COUNT] = steering->count,
        [BATON_STEERING_MAP_COUNTERS] = steering->counters,
        [BATON_STEERING_MAP_SETTINGS] = steering->settings,
        [BATON_STEERING_MAP_FLOWS] = steering->flows,
        [BATON_STEERING_MAP_TAGS] = steering->tags,
        [BATON_STEERING_MAP_COOKIES] = steering->cookies,
        [BATON_STEERING_MAP_DECISIONS] = steering->decisions,
    };
    size_t loads = sizeof(baton_steering_map_loads) / sizeof(baton_steering_map_loads[0]);
    for (size_t index = 0; index < loads; index++) {
        uint32_t instruction = baton_steering_map_loads[index].instruction;
        // `generate` checked this; a header edited by hand must not make Baton write
        // past the program.
        if (instruction + 1 >= count || program[instruction].code != (BPF_LD | BPF_IMM | BPF_DW) ||
            program[instruction].src_reg != BPF_PSEUDO_MAP_FD) {
            snprintf(failure, failure_size, "steering_program.h: instruction %u loads no map", instruction);
            return EINVAL;
        }
        program[instruction].imm = maps[baton_steering_map_loads[index].map];
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

int baton_steering_create(uint32_t capacity, uint32_t flow_capacity, baton_steering *steering, char *failure,
                          size_t failure_size) {
    baton_steering made = {.program = -1, .sockets = -1, .rotation = -1, .count = -1, .counters = -1,
                           .settings = -1, .flows = -1, .tags = -1, .cookies = -1, .decisions = -1,
                           .capacity = capacity, .flow_capacity = flow_capacity};
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
    } else if ((error = baton_map_create(BPF_MAP_TYPE_ARRAY, sizeof(baton_steering_settings), 1,
                                         "baton_settings", &made.settings)) != 0) {
        step = "BPF_MAP_CREATE settings array";
    } else if ((error = baton_map_create_keyed(BPF_MAP_TYPE_LRU_HASH, sizeof(baton_steering_flow_key),
                                               sizeof(baton_steering_flow), flow_capacity, "baton_flows",
                                               &made.flows)) != 0) {
        step = "BPF_MAP_CREATE flow table (LRU hash)";
    } else if ((error = baton_map_create(BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), capacity,
                                         "baton_tags", &made.tags)) != 0) {
        step = "BPF_MAP_CREATE tag array";
    } else if ((error = baton_map_create(BPF_MAP_TYPE_HASH, sizeof(uint32_t), capacity,
                                         "baton_cookies", &made.cookies)) != 0) {
        step = "BPF_MAP_CREATE cookie hash";
    } else if ((error = baton_map_create(BPF_MAP_TYPE_ARRAY, sizeof(uint64_t), BATON_STEERING_DECISIONS,
                                         "baton_decisions", &made.decisions)) != 0) {
        step = "BPF_MAP_CREATE decision array";
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

int baton_steering_place(const baton_steering *steering, uint32_t entry, int socket_fd) {
    uint64_t zero = 0;
    int error = baton_map_update(steering->counters, entry, &zero);
    if (error != 0) {
        return error;
    }
    // The tag first: a flow or cookie recorded for the entry's last socket is stale
    // from now on, before the entry holds the new one. A handed-over group from a
    // Baton without flows has no tags.
    if (steering->tags >= 0) {
        uint64_t cookie = 0;
        if ((error = baton_socket_cookie(socket_fd, &cookie)) != 0) {
            return error;
        }
        uint32_t tag = (uint32_t)cookie, last = 0;
        if (baton_map_lookup(steering->tags, entry, &last) == 0 && last != tag) {
            uint32_t held = 0;
            if (baton_map_lookup(steering->cookies, last, &held) == 0 && held == entry) {
                baton_map_delete(steering->cookies, &last);
            }
        }
        if ((error = baton_map_update(steering->tags, entry, &tag)) != 0 ||
            (error = baton_map_update(steering->cookies, tag, &entry)) != 0) {
            return error;
        }
    }
    uint64_t value = (uint64_t)socket_fd;
    return baton_map_update(steering->sockets, entry, &value);
}

int baton_steering_configure(const baton_steering *steering, uint32_t mode, uint64_t idle_nanoseconds) {
    if (steering->settings < 0) {
        return mode == BATON_STEERING_FLOWS_NONE ? 0 : ENOTSUP;
    }
    baton_steering_settings settings = {.mode = mode, .idle_nanoseconds = idle_nanoseconds};
    return baton_map_update(steering->settings, 0, &settings);
}

int baton_steering_read_decision(const baton_steering *steering, uint32_t decision, uint64_t *datagrams) {
    if (steering->decisions < 0) {
        return ENOENT;
    }
    return baton_map_lookup(steering->decisions, decision, datagrams);
}

int baton_steering_count_flows(const baton_steering *steering, uint64_t *flows, uint32_t *tags, uint32_t capacity) {
    memset(flows, 0, sizeof(uint64_t) * capacity);
    if (steering->flows < 0) {
        return 0;
    }
    for (uint32_t entry = 0; entry < capacity; entry++) {
        if (baton_map_lookup(steering->tags, entry, &tags[entry]) != 0) {
            tags[entry] = 0;
        }
    }
    baton_steering_flow_key key, next;
    baton_steering_flow flow;
    union bpf_attr attributes;
    int first = 1;
    for (;;) {
        memset(&attributes, 0, sizeof(attributes));
        attributes.map_fd = (uint32_t)steering->flows;
        attributes.key = first ? 0 : (uint64_t)(uintptr_t)&key;
        attributes.next_key = (uint64_t)(uintptr_t)&next;
        if (baton_bpf(BPF_MAP_GET_NEXT_KEY, &attributes) != 0) {
            return errno == ENOENT ? 0 : errno;
        }
        first = 0;
        key = next;
        memset(&attributes, 0, sizeof(attributes));
        attributes.map_fd = (uint32_t)steering->flows;
        attributes.key = (uint64_t)(uintptr_t)&key;
        attributes.value = (uint64_t)(uintptr_t)&flow;
        // A flow of a closed socket counts for nobody: its entry's tag changed, or the
        // entry is empty (which the caller checks).
        if (baton_bpf(BPF_MAP_LOOKUP_ELEM, &attributes) == 0 && flow.entry < capacity && tags[flow.entry] == flow.tag) {
            flows[flow.entry]++;
        }
    }
}

int baton_steering_remove(const baton_steering *steering, uint32_t entry) {
    union bpf_attr attributes;
    memset(&attributes, 0, sizeof(attributes));
    attributes.map_fd = (uint32_t)steering->sockets;
    attributes.key = (uint64_t)(uintptr_t)&entry;
    return baton_bpf(BPF_MAP_DELETE_ELEM, &attributes) == 0 ? 0 : errno;
}

int baton_steering_occupant(const baton_steering *steering, uint32_t entry, uint64_t *cookie) {
    return baton_map_lookup(steering->sockets, entry, cookie);
}

int baton_steering_set_rotation(const baton_steering *steering, uint32_t index, uint32_t entry) {
    return baton_map_update(steering->rotation, index, &entry);
}

int baton_steering_set_count(const baton_steering *steering, uint32_t count) {
    return baton_map_update(steering->count, 0, &count);
}

int baton_steering_read_counter(const baton_steering *steering, uint32_t entry, uint64_t *selections) {
    return baton_map_lookup(steering->counters, entry, selections);
}

void baton_steering_close(baton_steering *steering) {
    int *fds[] = {&steering->program, &steering->sockets, &steering->rotation, &steering->count, &steering->counters,
                  &steering->settings, &steering->flows, &steering->tags, &steering->cookies, &steering->decisions};
    for (size_t index = 0; index < sizeof(fds) / sizeof(fds[0]); index++) {
        if (*fds[index] >= 0) {
            close(*fds[index]);
            *fds[index] = -1;
        }
    }
}
