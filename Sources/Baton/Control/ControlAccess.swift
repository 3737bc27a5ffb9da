import BatonCore
import CBatonShim
import Glibc

/// Who may ask what of Baton through its control socket, decided for each request by
/// the peer's credentials (SO_PEERCRED, SO_PEERGROUPS): root and Baton's own user may
/// do everything; members of `control_group` may reload, scale, promote or roll back a
/// canary (whoever may start a rollout may finish it) and see the status;
/// members of `control_readonly_group` may see the status. The socket file's mode,
/// group and ACL let exactly these connect (``apply(to:)``).
struct ControlAccess: Sendable, Equatable {
    /// Baton's own (effective) uid.
    var owner: uid_t = geteuid()
    var controlGroup: SystemGroup?
    var readOnlyGroup: SystemGroup?

    init(controlGroup: SystemGroup? = nil, readOnlyGroup: SystemGroup? = nil) {
        self.controlGroup = controlGroup
        self.readOnlyGroup = readOnlyGroup
    }

    init(_ configuration: Configuration) {
        self.init(controlGroup: configuration.controlGroup, readOnlyGroup: configuration.controlReadOnlyGroup)
    }

    /// The commands members of `control_group` may run: a rollout they may start
    /// (`reload --canary`) they may also finish.
    static let controlCommands: Set<ControlRequest.Command> = [.status, .reload, .scale, .promote, .rollback]
    /// The commands members of `control_readonly_group` may run.
    static let readOnlyCommands: Set<ControlRequest.Command> = [.status]

    /// The connecting process, as the kernel saw it when it connected.
    struct Peer: Sendable, Equatable {
        var pid: pid_t
        var uid: uid_t
        var gid: gid_t
        /// Its supplementary groups.
        var groups: [gid_t]

        func belongs(to group: SystemGroup?) -> Bool {
            guard let group else { return false }
            return gid == group.gid || groups.contains(group.gid)
        }
    }

    /// Why `peer` may not run `command`, or nil when it may.
    func refusal(of command: ControlRequest.Command, by peer: Peer) -> String? {
        if peer.uid == 0 || peer.uid == owner { return nil }
        if peer.belongs(to: controlGroup), Self.controlCommands.contains(command) { return nil }
        if peer.belongs(to: readOnlyGroup), Self.readOnlyCommands.contains(command) { return nil }
        var allowed: [String] = []
        if let controlGroup {
            allowed.append("members of control_group \(controlGroup.name.quoted) may run \(Self.list(Self.controlCommands))")
        }
        if let readOnlyGroup {
            allowed.append("members of control_readonly_group \(readOnlyGroup.name.quoted) may run \(Self.list(Self.readOnlyCommands))")
        }
        allowed.append(owner == 0 ? "root may do everything" : "root and uid \(owner) may do everything")
        return "uid \(peer.uid) (pid \(peer.pid)) may not run \(command.rawValue): \(allowed.joined(separator: "; ")); nothing changed"
    }

    private static func list(_ commands: Set<ControlRequest.Command>) -> String {
        let names = ControlRequest.Command.allCases.filter(commands.contains).map(\.rawValue)
        return names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " and " + names.last!
    }

    /// Lets exactly those who may use the socket at `path` connect to it: mode 0600
    /// (Baton's user), 0660 with `control_group` as its group, and an ACL entry for
    /// `control_readonly_group`.
    func apply(to path: String) throws(SystemError) {
        if let controlGroup {
            guard chown(path, uid_t.max, controlGroup.gid) == 0 else {
                throw .last("chown", subject: "control socket \(path) to group \(controlGroup.name) (Baton must be root or a member of it)")
            }
        }
        guard chmod(path, controlGroup == nil ? 0o600 : 0o660) == 0 else { throw .last("chmod", subject: "control socket \(path)") }
        if let readOnlyGroup {
            let groups = [readOnlyGroup.gid]
            let error = groups.withUnsafeBufferPointer {
                baton_set_group_acl(path, $0.baseAddress, Int32($0.count), controlGroup == nil ? 0 : 1)
            }
            guard error == 0 else {
                let note = error == EOPNOTSUPP ? " (the file system does not support POSIX ACLs, which control_readonly_group needs)" : ""
                throw SystemError("setxattr(system.posix_acl_access)", errno: error, subject: "control socket \(path)\(note)")
            }
        }
    }

    /// What keeps members of the groups from reaching the socket's directory, if anything:
    /// a directory they cannot pass through.
    func unreachableDirectory(of path: String) -> String? {
        guard controlGroup != nil || readOnlyGroup != nil else { return nil }
        var directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if directory.isEmpty { directory = "/" }
        var info = stat()
        guard stat(directory, &info) == 0 else { return nil }
        let groups = [controlGroup, readOnlyGroup].compactMap { $0?.gid }
        let passable = info.st_mode & S_IXOTH != 0 || (info.st_mode & S_IXGRP != 0 && groups.allSatisfy { $0 == info.st_gid })
        guard !passable else { return nil }
        return
            "the control socket's directory \(directory) (mode 0\(String(info.st_mode & 0o7777, radix: 8)), uid \(info.st_uid), gid \(info.st_gid)) does not let the control groups' members through: make it 0711 or 0755"
    }
}
