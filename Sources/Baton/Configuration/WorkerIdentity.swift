import BatonCore
import Glibc

/// The user workers run as (`user`, `--user`), looked up in the user database when the
/// configuration is read, so that a name that does not exist is a configuration error
/// at start and at reload, and the forked child reads no database.
public struct WorkerUser: Sendable, Equatable, Codable, CustomStringConvertible {
    var name: String
    var uid: uid_t
    /// The primary group of the user's entry.
    var gid: gid_t
    /// The user's home directory, the workers' `HOME`.
    var home: String
    /// The groups the user belongs to, with the primary group (`getgrouplist`): the
    /// supplementary groups `initgroups` would give.
    var groups: [gid_t]

    public var description: String { name }

    /// The user named `name`, or with that number; nil when there is none.
    static func lookUp(_ name: String) -> WorkerUser? {
        var entry = passwd()
        var buffer = [CChar](repeating: 0, count: 16384)
        var found: UnsafeMutablePointer<passwd>?
        if getpwnam_r(name, &entry, &buffer, buffer.count, &found) != 0 || found == nil {
            guard let number = uid_t(name), getpwuid_r(number, &entry, &buffer, buffer.count, &found) == 0, found != nil else {
                return nil
            }
        }
        let userName = String(cString: entry.pw_name)
        return WorkerUser(
            name: userName, uid: entry.pw_uid, gid: entry.pw_gid, home: String(cString: entry.pw_dir),
            groups: groupList(of: userName, primary: entry.pw_gid))
    }

    private static func groupList(of user: String, primary: gid_t) -> [gid_t] {
        var count: Int32 = 64
        while true {
            var groups = [gid_t](repeating: 0, count: Int(count))
            var capacity = count
            if getgrouplist(user, primary, &groups, &capacity) >= 0 {
                return Array(groups.prefix(Int(capacity)))
            }
            // -1: too small, and `capacity` says how many there are.
            count = max(capacity, count * 2)
        }
    }
}

/// A group from the group database: the one workers run as (`group`, `--group`) instead
/// of their user's primary group, or one whose members may use the control socket
/// (`control_group`, `control_readonly_group`).
public struct SystemGroup: Sendable, Equatable, Codable, CustomStringConvertible {
    var name: String
    var gid: gid_t

    public var description: String { name }

    /// The group named `name`, or with that number; nil when there is none.
    static func lookUp(_ name: String) -> SystemGroup? {
        var entry = group()
        var buffer = [CChar](repeating: 0, count: 65536)
        var found: UnsafeMutablePointer<group>?
        if getgrnam_r(name, &entry, &buffer, buffer.count, &found) != 0 || found == nil {
            guard let number = gid_t(name), getgrgid_r(number, &entry, &buffer, buffer.count, &found) == 0, found != nil else {
                return nil
            }
        }
        return SystemGroup(name: String(cString: entry.gr_name), gid: entry.gr_gid)
    }
}

/// What Baton may do about its workers' credentials.
enum CredentialPrivilege {
    /// Whether this process can set another uid and gid and the supplementary groups:
    /// it has CAP_SETUID and CAP_SETGID in its effective set (root has them unless a
    /// bounding set took them away).
    static var canChangeCredentials: Bool {
        guard let status = try? FileContents.read("/proc/self/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
            let mask = UInt64(line.dropFirst("CapEff:".count).trimmingPrefix { $0 == " " || $0 == "\t" }, radix: 16)
        else { return geteuid() == 0 }
        let setgid: UInt64 = 1 << 6
        let setuid: UInt64 = 1 << 7
        return mask & (setgid | setuid) == (setgid | setuid)
    }

    /// Why workers cannot run as `uid` and `gid`, or nil when they can: another uid or
    /// gid than Baton's needs the privilege to change them.
    static func problem(uid: uid_t?, gid: gid_t?) -> String? {
        let other = (uid.map { $0 != geteuid() } ?? false) || (gid.map { $0 != getegid() } ?? false)
        guard other, !canChangeCredentials else { return nil }
        return
            "Baton runs as uid \(geteuid()) without CAP_SETUID and CAP_SETGID, and only root (or a Baton with those capabilities) can run workers as another user or group: start Baton as root (with both in its capability bounding set), or leave the setting out"
    }
}

extension WorkerConfiguration {
    /// The credentials a worker takes before `execve`, or nil when it keeps Baton's.
    /// Without the privilege to set groups, a user and group that are Baton's own change
    /// nothing (the configuration reader refuses any other).
    var credentials: ProcessSpawner.Credentials? {
        guard user != nil || group != nil else { return nil }
        let uid = user?.uid ?? geteuid()
        let gid = group?.gid ?? user?.gid ?? getegid()
        guard CredentialPrivilege.canChangeCredentials else { return nil }
        var groups = user?.groups ?? []
        if let user, gid != user.gid {
            // As initgroups(user, group) would: the user's memberships and the group given.
            groups.removeAll { $0 == user.gid }
        }
        if !groups.contains(gid) { groups.append(gid) }
        return ProcessSpawner.Credentials(uid: uid, gid: gid, groups: groups)
    }
}
