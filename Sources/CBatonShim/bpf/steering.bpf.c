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
// | baton_settings | ARRAY, 1 element    | 0                    | struct settings         |
// | baton_flows    | LRU_HASH            | struct flow_key      | struct flow             |
// | baton_tags     | ARRAY               | u32 entry            | u32 tag of its socket   |
// | baton_cookies  | HASH                | u32 tag (QUIC cookie)| u32 entry               |
// | baton_decisions| ARRAY, 4 elements   | enum decision        | u64 datagrams           |
//
// A socket's tag is the low 32 bits of its SO_COOKIE: Baton writes it into `baton_tags`
// before it places the socket in an entry, so that a flow (or a QUIC cookie) recorded for
// an entry whose socket closed and whose entry now holds another is seen as stale.
//
// Only the kernel's own headers: glibc's do not compile for the BPF target.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>

// Created by the loader (steering.c) with `capacity` elements (the flow table with the
// listener's size), which writes each map's descriptor into every instruction that
// loads it; declared here only to be named.
struct baton_map;
extern struct baton_map baton_sockets;
extern struct baton_map baton_rotation;
extern struct baton_map baton_count;
extern struct baton_map baton_counters;
extern struct baton_map baton_settings;
extern struct baton_map baton_flows;
extern struct baton_map baton_tags;
extern struct baton_map baton_cookies;
extern struct baton_map baton_decisions;

// BATON_STEERING_CLOSED in CBatonShim.h: the count of a group that takes nothing new.
#define CLOSED 0xFFFFFFFFu

// baton_steering_settings in CBatonShim.h: the listener's `flows` and idle time.
enum mode { MODE_NONE = 0, MODE_TUPLE = 1, MODE_QUIC = 2 };
struct settings {
    __u32 mode;
    __u32 unused;
    __u64 idle_nanoseconds;
};

// baton_steering_flow_key and baton_steering_flow in CBatonShim.h. An IPv4 address
// takes the first 4 bytes of `address`, the rest zero.
struct flow_key {
    __u8 address[16];
    __u16 port;
    __u16 family;
};
struct flow {
    __u32 entry;
    __u32 tag;
    __u64 seen;
};

// BATON_STEERING_DECISION_* in CBatonShim.h.
enum decision { BY_COOKIE = 0, BY_FLOW = 1, NEW_FLOW = 2, FALLBACK = 3 };

// Where the cookie sits in a QUIC connection ID (Docs/steering.md): byte 0 is the
// server's (QUIC-LB's first octet), the 4 bytes after it are the cookie.
#define COOKIE_OFFSET 1
#define COOKIE_LENGTH 4

// Kernel helpers are called by number (no libbpf, whose headers declare them so).
static void *(*const map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*const map_update_elem)(void *map, const void *key, const void *value, __u64 flags) =
    (void *)BPF_FUNC_map_update_elem;
static __u64 (*const ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static long (*const load_bytes_relative)(const void *context, __u32 offset, void *to, __u32 length, __u32 start) =
    (void *)BPF_FUNC_skb_load_bytes_relative;
static long (*const sk_select_reuseport)(struct sk_reuseport_md *context, void *map, void *key, __u64 flags) =
    (void *)BPF_FUNC_sk_select_reuseport;

static void count_decision(__u32 decision) {
    __u64 *datagrams = map_lookup_elem(&baton_decisions, &decision);
    if (datagrams != 0) {
        __atomic_fetch_add(datagrams, 1, __ATOMIC_RELAXED);
    }
}

static void count_selection(__u32 entry) {
    __u64 *selections = map_lookup_elem(&baton_counters, &entry);
    if (selections != 0) {
        // Relaxed: a count for status, ordered with nothing; the add takes no fetch.
        __atomic_fetch_add(selections, 1, __ATOMIC_RELAXED);
    }
}

// Selects the socket in `entry` if it is still the one tagged `tag`: an entry whose
// socket closed is empty (the selection fails), and one that holds another socket has
// another tag. Never a datagram to a closed socket.
static int select_tagged(struct sk_reuseport_md *context, __u32 entry, __u32 tag) {
    __u32 *current = map_lookup_elem(&baton_tags, &entry);
    if (current == 0 || *(volatile __u32 *)current != tag) {
        return 0;
    }
    if (sk_select_reuseport(context, &baton_sockets, &entry, 0) != 0) {
        return 0;
    }
    count_selection(entry);
    return 1;
}

// The QUIC cookie of a datagram whose UDP payload starts at `payload`: in the
// destination connection ID of a short header (byte 1 on) or of a long one (its length
// at byte 5, the ID from byte 6). Returns 0 when the datagram has none.
static int quic_cookie(struct sk_reuseport_md *context, __u32 payload, __u32 *cookie) {
    __u8 header[6];
    if (load_bytes_relative(context, payload, header, sizeof(header), BPF_HDR_START_NET) != 0) {
        return 0;
    }
    __u32 at = payload + 1 + COOKIE_OFFSET;
    if (header[0] & 0x80) {
        if (header[5] < COOKIE_OFFSET + COOKIE_LENGTH) {
            return 0;
        }
        at = payload + 6 + COOKIE_OFFSET;
    }
    __u8 bytes[COOKIE_LENGTH];
    if (load_bytes_relative(context, at, bytes, sizeof(bytes), BPF_HDR_START_NET) != 0) {
        return 0;
    }
    // As the bytes stand in the ID, most significant first.
    *cookie = (__u32)bytes[0] << 24 | (__u32)bytes[1] << 16 | (__u32)bytes[2] << 8 | bytes[3];
    return 1;
}

// The remote address and port of a UDP datagram, and where its payload starts
// (from the network header). Returns 0 for anything else.
static int remote(struct sk_reuseport_md *context, struct flow_key *key, __u32 *payload) {
    if (context->ip_protocol != IPPROTO_UDP) {
        return 0;
    }
    __u32 transport;
    if (context->eth_protocol == __builtin_bswap16(ETH_P_IP)) {
        __u8 first;
        if (load_bytes_relative(context, 0, &first, 1, BPF_HDR_START_NET) != 0 ||
            load_bytes_relative(context, 12, key->address, 4, BPF_HDR_START_NET) != 0) {
            return 0;
        }
        transport = (first & 0x0F) * 4;
        key->family = 4;
    } else if (context->eth_protocol == __builtin_bswap16(ETH_P_IPV6)) {
        if (load_bytes_relative(context, 8, key->address, 16, BPF_HDR_START_NET) != 0) {
            return 0;
        }
        // Extension headers before UDP are not followed: such a datagram has no flow.
        __u8 next;
        if (load_bytes_relative(context, 6, &next, 1, BPF_HDR_START_NET) != 0 || next != IPPROTO_UDP) {
            return 0;
        }
        transport = 40;
        key->family = 6;
    } else {
        return 0;
    }
    if (transport < 20 || transport > 60 ||
        load_bytes_relative(context, transport, &key->port, 2, BPF_HDR_START_NET) != 0) {
        return 0;
    }
    *payload = transport + 8;
    return 1;
}

// Runs for every new connection (or datagram) of the group and, with `migrating_sk`
// set, for every connection leaving a socket that closes or stops listening: both go to
// the rotation alike. A datagram of a listener with `flows` goes first to the socket its
// QUIC cookie names, then to the one its flow was recorded for, while that socket is
// open; else to the rotation, where its flow is recorded.
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

    struct settings *settings = map_lookup_elem(&baton_settings, &zero);
    __u32 mode = settings != 0 ? settings->mode : MODE_NONE;
    __u64 idle = settings != 0 ? settings->idle_nanoseconds : 0;
    struct flow_key key = {};
    __u32 payload = 0;
    __u64 now = 0;
    int tracked = mode != MODE_NONE && remote(context, &key, &payload);
    int stale = 0;
    if (tracked) {
        now = ktime_get_ns();
        __u32 cookie;
        if (mode == MODE_QUIC && quic_cookie(context, payload, &cookie)) {
            __u32 *entry = map_lookup_elem(&baton_cookies, &cookie);
            if (entry != 0) {
                if (select_tagged(context, *entry, cookie)) {
                    count_decision(BY_COOKIE);
                    return SK_PASS;
                }
                stale = 1;
            }
        }
        struct flow *flow = map_lookup_elem(&baton_flows, &key);
        if (flow != 0) {
            // Another CPU may have stamped it after `now` was read.
            __u64 seen = flow->seen;
            if ((seen >= now || now - seen <= idle) && select_tagged(context, flow->entry, flow->tag)) {
                flow->seen = now;
                count_decision(BY_FLOW);
                return SK_PASS;
            }
            stale = 1;
        }
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
    count_selection(entry);
    if (tracked) {
        __u32 *tag = map_lookup_elem(&baton_tags, &entry);
        if (tag != 0) {
            struct flow recorded = {.entry = entry, .tag = *(volatile __u32 *)tag, .seen = now};
            // A full table evicts its least recently used flow (LRU_HASH).
            map_update_elem(&baton_flows, &key, &recorded, BPF_ANY);
        }
        count_decision(stale ? FALLBACK : NEW_FLOW);
    }
    return SK_PASS;
}
