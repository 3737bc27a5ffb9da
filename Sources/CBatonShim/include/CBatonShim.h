// The few system calls Baton makes that Swift's Glibc module cannot express, or that
// must run between fork() and execve() where no Swift code may run. One C file per
// concern implements them (Sources/CBatonShim/*.c); each section below names its file.
// Every function returns 0 on success or a positive errno value.
#pragma once

#include <sys/types.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

// --- spawn.c -----------------------------------------------------------------------
// Starting a worker.

/// Everything the child needs to become a worker. All memory is prepared by the
/// parent before fork(), so the child only runs async-signal-safe code.
typedef struct {
    /// Absolute path of the program (no PATH search happens in the child).
    const char *path;
    /// NULL-terminated argument and environment vectors.
    char *const *argv;
    char *const *envp;
    /// Index in envp of a writable "NAME=" entry (LISTEN_PID, BATON_PRELOAD_PID) with at
    /// least 24 spare bytes, completed with the child's own pid; -1 when there is none.
    int pid_variable_index;
    /// Descriptors placed at 3, 4, ... in this order.
    const int *fds;
    int fd_count;
    /// Descriptors to install as the child's stdout and stderr; -1 keeps the parent's.
    int stdout_fd;
    int stderr_fd;
    /// Working directory, or NULL.
    const char *directory;
    /// Whether the child leads a new session (setsid), and so a new process group.
    int new_session;
    /// The signal the child gets when the thread that forked it exits
    /// (PR_SET_PDEATHSIG), or 0. The child exits at once when its parent, `parent_pid`,
    /// is already gone.
    int parent_death_signal;
    pid_t parent_pid;
    /// Whether the child takes the credentials below before execve (and before it
    /// changes to `directory`, which it enters as that user): supplementary
    /// groups (setgroups), then gid, then uid (setresgid, setresuid). Resolved by the
    /// parent: the child reads no user database.
    int change_credentials;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int group_count;
    /// PR_SET_NO_NEW_PRIVS before execve.
    int no_new_privileges;
    /// The child's umask, or -1 to keep the parent's.
    int umask;
    /// Resource limits set (soft and hard) before the credentials change, so that a
    /// hard limit above Baton's can still be raised by a privileged Baton.
    const int *limit_resources;
    const uint64_t *limit_values;
    int limit_count;
} baton_spawn_request;

/// The step of the child that failed, as `baton_spawn` reports it.
typedef enum {
    BATON_SPAWN_FORK = 0,
    BATON_SPAWN_SETUP,
    BATON_SPAWN_CHDIR,
    BATON_SPAWN_DESCRIPTORS,
    BATON_SPAWN_SETRLIMIT,
    BATON_SPAWN_SETGROUPS,
    BATON_SPAWN_SETGID,
    BATON_SPAWN_SETUID,
    BATON_SPAWN_NO_NEW_PRIVILEGES,
    BATON_SPAWN_EXECVE,
} baton_spawn_step;

/// Forks and executes a worker. Returns 0 and the pid, or the errno of the failing
/// step (fork, or a step of the child, reported back through a pipe) and that step
/// in `*failed_step`.
int baton_spawn(const baton_spawn_request *request, pid_t *pid, int *failed_step);

// --- process.c ---------------------------------------------------------------------
// Signals, reaping, and what an execve of Baton itself keeps.

/// Blocks `signals` in the calling thread (threads created afterwards inherit the mask)
/// and returns a signalfd that reads them.
int baton_signalfd(const int *signals, int count, int *fd);

/// Reads one reaped child: 0 with *pid > 0, 0 with *pid == 0 when none is left to reap.
/// `*status` receives the exit code (>= 0) or the negated terminating signal.
int baton_reap(pid_t *pid, int *status);

/// Waits for the next signal on a signalfd from `baton_signalfd`.
int baton_read_signal(int fd, int *signal);

/// Makes this process the reaper of orphaned descendants (PR_SET_CHILD_SUBREAPER).
int baton_become_subreaper(void);

/// Makes every descriptor from `first` on close-on-exec (close_range), so that an
/// execve of this process passes on only what is then made inheritable on purpose.
int baton_close_on_exec_from(int first);

// --- events.c ----------------------------------------------------------------------
// What the event loop waits on.

/// A close-on-exec pipe.
int baton_pipe(int ends[2]);

/// A close-on-exec epoll instance in `*epoll`.
int baton_epoll_create(int *epoll);

/// Starts (`watch` true) or stops watching `fd` for input.
int baton_epoll_watch(int epoll, int fd, bool watch);

/// Blocks until at least one watched descriptor is readable (or hung up), and stores
/// up to `capacity` of them in `ready`. Returns their number, or -errno.
int baton_epoll_wait(int epoll, int *ready, int capacity);

// --- credentials.c -----------------------------------------------------------------
// Who talks to Baton, and who may.

/// Turns on SO_PASSCRED so that each datagram carries its sender's credentials.
int baton_enable_credentials(int fd);

/// Receives one waiting datagram with its sender's pid, without blocking (EAGAIN when
/// none waits). Descriptors passed with it are closed. `*length` is the payload length.
int baton_receive_with_credentials(int fd, char *buffer, size_t capacity, size_t *length, pid_t *pid);

/// The pid, uid and gid of the peer of a connected unix socket (SO_PEERCRED).
int baton_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// Gives the file at `path` an access ACL (system.posix_acl_access) that lets its owner
/// and the groups `groups` read and write, its owning group too when `owner_group` is
/// nonzero, and nobody else. EOPNOTSUPP on a file system without POSIX ACLs.
int baton_set_group_acl(const char *path, const gid_t *groups, int group_count, int owner_group);

// --- sockets.c ---------------------------------------------------------------------
// What Baton reads of a socket.

/// The current and maximum accept-queue length of a listening TCP socket.
int baton_accept_queue(int fd, uint32_t *depth, uint32_t *capacity);

/// The kernel's cookie of a socket (SO_COOKIE), the same for every descriptor of it.
int baton_socket_cookie(int fd, uint64_t *cookie);

// --- connections.c -----------------------------------------------------------------
// The connections on a listening TCP socket's port (sock_diag), for the drain.

/// One connection open on the worker's side (established, or closed by the client only).
typedef struct {
    /// The inode of its socket, as `/proc/<pid>/fd/*` links name it (`socket:[inode]`).
    uint64_t inode;
    /// Bytes received that the worker has not read yet.
    uint32_t unread;
    /// Whether `bytes_sent` was reported (Linux >= 4.19).
    bool has_bytes_sent;
    uint64_t bytes_received;
    uint64_t bytes_sent;
    /// Since the last byte received, or since the connection was set up when none was.
    uint32_t milliseconds_since_received;
} baton_connection;

/// Every connection whose local port is that of one of `listeners` (IPv4 or IPv6 TCP
/// sockets), of every process, asked of the kernel once per address family: up to
/// `capacity` into `connections`, their number into `count`. ENOBUFS when there were more
/// than `capacity` (`count` says how many).
int baton_listener_connections(const int *listeners, size_t listener_count, baton_connection *connections,
                               size_t capacity, size_t *count);

// --- steering.c --------------------------------------------------------------------
// A listener's steering program and its maps (program source: bpf/steering.bpf.c).

/// One SO_REUSEPORT group's steering: an SK_REUSEPORT program (attached as
/// BPF_SK_REUSEPORT_SELECT_OR_MIGRATE, Linux >= 5.14) and the maps it reads. The program
/// picks `sockets[rotation[hash % count]]` for every new connection (or datagram) and
/// for every connection migrating off a closing listener; with `count` 0 it leaves the
/// choice to the kernel; with `count` BATON_STEERING_CLOSED it drops them all (a listener
/// being removed: a dropped SYN is sent again by the client, while what the group
/// already queued is accepted). A socket sits in at most one entry of one socket array
/// (the kernel refuses a second with EBUSY), hence the rotation's indirection through
/// entries. The maps' layout is what `batonctl upgrade` hands over to the next Baton.
/// Creating it needs CAP_BPF (or CAP_SYS_ADMIN). Docs/steering.md.
typedef struct {
    int program;
    /// BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: entry -> socket (written as an fd, read as its cookie).
    int sockets;
    /// BPF_MAP_TYPE_ARRAY: rotation index -> entry.
    int rotation;
    /// BPF_MAP_TYPE_ARRAY of one u32: the number of rotation indices in use.
    int count;
    /// BPF_MAP_TYPE_ARRAY: entry -> u64 connections (or datagrams) the program gave it.
    int counters;
    /// Entries in `sockets` and indices in `rotation`.
    uint32_t capacity;
    /// The maps of UDP flows (-1 in a group handed over by a Baton without them).
    /// BPF_MAP_TYPE_ARRAY of one baton_steering_settings.
    int settings;
    /// BPF_MAP_TYPE_LRU_HASH: baton_steering_flow_key -> baton_steering_flow.
    int flows;
    /// BPF_MAP_TYPE_ARRAY: entry -> u32 tag (low 32 bits of SO_COOKIE) of its socket.
    int tags;
    /// BPF_MAP_TYPE_HASH: u32 tag (a QUIC cookie) -> entry.
    int cookies;
    /// BPF_MAP_TYPE_ARRAY: BATON_STEERING_DECISION_* -> u64 datagrams.
    int decisions;
    /// Flows the flow table holds at most.
    uint32_t flow_capacity;
} baton_steering;

/// A listener's `flows` (bpf/steering.bpf.c has its own copy: enum mode).
#define BATON_STEERING_FLOWS_NONE 0
#define BATON_STEERING_FLOWS_TUPLE 1
#define BATON_STEERING_FLOWS_QUIC 2

/// What the program does with a datagram of a listener with `flows`, counted in
/// `decisions` (bpf/steering.bpf.c: enum decision).
#define BATON_STEERING_DECISION_COOKIE 0
#define BATON_STEERING_DECISION_FLOW 1
#define BATON_STEERING_DECISION_NEW 2
#define BATON_STEERING_DECISION_FALLBACK 3
#define BATON_STEERING_DECISIONS 4

/// The program's settings (bpf/steering.bpf.c: struct settings).
typedef struct {
    uint32_t mode;
    uint32_t unused;
    uint64_t idle_nanoseconds;
} baton_steering_settings;

/// A flow: the remote address (IPv4 in the first 4 bytes) and port, as the packet has
/// them (bpf/steering.bpf.c: struct flow_key).
typedef struct {
    uint8_t address[16];
    uint16_t port;
    uint16_t family;
} baton_steering_flow_key;

/// Where a flow goes: the entry, and the tag its socket had (bpf/steering.bpf.c: struct flow).
typedef struct {
    uint32_t entry;
    uint32_t tag;
    uint64_t seen;
} baton_steering_flow;

/// Creates the maps and loads the program. On failure, `failure` names the step, and
/// for a program the verifier refused, the last line of the verifier's log.
int baton_steering_create(uint32_t capacity, uint32_t flow_capacity, baton_steering *steering, char *failure,
                          size_t failure_size);

/// Sets the listener's `flows` (BATON_STEERING_FLOWS_*) and how long an idle flow is kept.
/// ENOTSUP for flows in a handed-over group that has no flow maps.
int baton_steering_configure(const baton_steering *steering, uint32_t mode, uint64_t idle_nanoseconds);

/// How many datagrams the program steered by `decision` (BATON_STEERING_DECISION_*).
int baton_steering_read_decision(const baton_steering *steering, uint32_t decision, uint64_t *datagrams);

/// How many live flows the flow table holds for each entry (`flows` and `tags` have
/// `capacity` elements; `tags` receives each entry's tag).
int baton_steering_count_flows(const baton_steering *steering, uint64_t *flows, uint32_t *tags, uint32_t capacity);

/// Attaches the program to the reuseport group of `socket_fd` (SO_ATTACH_REUSEPORT_EBPF),
/// which keeps it while any of its sockets is open.
int baton_steering_attach(const baton_steering *steering, int socket_fd);

/// Puts a listening (TCP) or bound (UDP) SO_REUSEPORT socket into `entry` of the socket
/// array, tags the entry with the socket's tag (its QUIC cookie), and zeroes the entry's counter. EBUSY when the socket is in an entry already.
int baton_steering_place(const baton_steering *steering, uint32_t entry, int socket_fd);

/// Empties `entry` of the socket array (ENOENT when it was empty).
int baton_steering_remove(const baton_steering *steering, uint32_t entry);

/// The cookie (SO_COOKIE) of the socket in `entry`; ENOENT when the entry is empty, which
/// it becomes by itself when its socket closes or stops listening.
int baton_steering_occupant(const baton_steering *steering, uint32_t entry, uint64_t *cookie);

/// Sets rotation index `index` to `entry`.
int baton_steering_set_rotation(const baton_steering *steering, uint32_t index, uint32_t entry);

/// The `count` that makes the program drop every new connection and migration (the
/// program, bpf/steering.bpf.c, has its own copy: CLOSED).
#define BATON_STEERING_CLOSED UINT32_MAX

/// Sets how many rotation indices the program picks from (or BATON_STEERING_CLOSED).
int baton_steering_set_count(const baton_steering *steering, uint32_t count);

/// How many connections (or datagrams) the program gave the socket in `entry` since it
/// was placed there.
int baton_steering_read_counter(const baton_steering *steering, uint32_t entry, uint64_t *selections);

/// Closes this process's descriptors of the program and maps; a group the program is
/// attached to keeps both, and keeps steering by the last rotation.
void baton_steering_close(baton_steering *steering);

// --- notify.c ----------------------------------------------------------------------
// Reporting to systemd.

/// Sends `message` to the datagram socket at `path` (`@name` for an abstract one, as in
/// NOTIFY_SOCKET), with `fd` attached (SCM_RIGHTS) unless it is -1, without ever
/// waiting: EAGAIN when the receiver's queue is full.
int baton_notify(const char *path, const char *message, int fd);

// --- capabilities.c ----------------------------------------------------------------
// Dropping what Baton does not need.

/// Keeps only the capabilities of `keep` (bits by capability number): drops every other
/// one from the bounding set (what any later execve, a worker's or an upgrade's, can
/// have) and from this process's permitted and effective sets, and empties its
/// inheritable set. Dropping from the bounding set needs CAP_SETPCAP, which is dropped
/// last; a capability already absent needs nothing. Returns 0 or an errno.
int baton_keep_capabilities(uint64_t keep);

// --- trial.c -----------------------------------------------------------------------
// Running code that may abort, in a copy of Baton.

/// How a trial ended (`baton_trial`): the function returned, the trial ran out of time
/// and was killed, or it ended without saying how (killed by SIGKILL, say).
#define BATON_TRIAL_RETURNED 0
#define BATON_TRIAL_TIMED_OUT (-1)
#define BATON_TRIAL_VANISHED (-2)

/// Calls `function(argument)` in a forked copy of this process that does nothing else
/// and exits, so that code which may abort (a parser's failed assertion) cannot take the
/// caller down. `outcome` is BATON_TRIAL_RETURNED, BATON_TRIAL_TIMED_OUT (killed after
/// `timeout_ms`), BATON_TRIAL_VANISHED, or the number of the fatal signal that ended it,
/// which the copy reports itself (so a reaper's `waitpid(-1)` taking it first loses
/// nothing).
int baton_trial(void (*function)(const void *argument), const void *argument, int timeout_ms, int *outcome);

/// Gives the heap's free memory back to the system (`malloc_trim(0)`), after a large
/// allocation that is gone for good, such as a refused configuration's. Returns 1 when
/// some was given back, else 0.
int baton_release_free_memory(void);
