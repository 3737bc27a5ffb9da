// The steering program of a listener's SO_REUSEPORT group (Docs/steering.md), in the
// restricted C that clang compiles for the BPF target. It is not part of the CBatonShim
// target: `generate` (beside it) compiles it and writes its instructions, and which of
// them load which map, into steering_program.h, which steering.c loads. After a change
// here, run `bash Sources/CBatonShim/bpf/generate` and commit both files.
//
// The maps are the contract that `batonctl upgrade` hands over to the next Baton, which
// reads them back and keeps steering through them, so their types, key and value sizes
// and what each index means stay as they are:
//
// | map            | type                | key                  | value                   |
// |----------------|---------------------|----------------------|-------------------------|
// | baton_sockets  | REUSEPORT_SOCKARRAY | u32 entry            | the socket (u64 cookie) |
// | baton_rotation | ARRAY               | u32 rotation index   | u32 entry               |
// | baton_count    | ARRAY, 1 element    | 0                    | u32 indices in use      |
// | baton_counters | ARRAY               | u32 entry            | u64 selections          |
//
// Only the kernel's own headers: glibc's do not compile for the BPF target.
#include <linux/bpf.h>

// Created by the loader (steering.c) with `capacity` elements, which writes each map's
// descriptor into every instruction that loads it; declared here only to be named.
struct baton_map;
extern struct baton_map baton_sockets;
extern struct baton_map baton_rotation;
extern struct baton_map baton_count;
extern struct baton_map baton_counters;

// BATON_STEERING_CLOSED in CBatonShim.h: the count of a group that takes nothing new.
#define CLOSED 0xFFFFFFFFu

// Kernel helpers are called by number (no libbpf, whose headers declare them so).
static void *(*const map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*const sk_select_reuseport)(struct sk_reuseport_md *context, void *map, void *key, __u64 flags) =
    (void *)BPF_FUNC_sk_select_reuseport;

// Runs for every new connection (or datagram) of the group and, with `migrating_sk`
// set, for every connection leaving a socket that closes or stops listening: both go to
// the rotation alike.
__attribute__((section("sk_reuseport/migrate"), used))
int baton_steer(struct sk_reuseport_md *context) {
    __u32 zero = 0;
    __u32 *in_use = map_lookup_elem(&baton_count, &zero);
    // Read once: Baton rewrites it while the program runs.
    __u32 count = in_use != 0 ? *(volatile __u32 *)in_use : 0;
    // No rotation yet: the kernel hashes over the whole group.
    if (count == 0) {
        return SK_PASS;
    }
    // A listener being removed: a dropped SYN is sent again by its client, and refused
    // once the group's sockets have closed.
    if (count == CLOSED) {
        return SK_DROP;
    }
    __u32 index = context->hash % count;
    __u32 *rotation_entry = map_lookup_elem(&baton_rotation, &index);
    if (rotation_entry == 0) {
        return SK_PASS;
    }
    __u32 entry = *(volatile __u32 *)rotation_entry;
    // An empty entry (its socket closed or stopped listening while in rotation) fails
    // the selection, and the kernel chooses.
    if (sk_select_reuseport(context, &baton_sockets, &entry, 0) != 0) {
        return SK_PASS;
    }
    __u64 *selections = map_lookup_elem(&baton_counters, &entry);
    if (selections != 0) {
        // Relaxed: a count for status, ordered with nothing; the add takes no fetch.
        __atomic_fetch_add(selections, 1, __ATOMIC_RELAXED);
    }
    return SK_PASS;
}
