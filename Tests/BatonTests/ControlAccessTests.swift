import BatonCore
import Glibc
import Testing

@testable import Baton

/// Who may ask what through the control socket, by the peer's credentials.
@Suite struct ControlAccessTests {
    let deploy = SystemGroup(name: "deploy", gid: 2001)
    let monitoring = SystemGroup(name: "monitoring", gid: 2002)

    func peer(uid: uid_t, gid: gid_t = 3000, groups: [gid_t] = []) -> ControlAccess.Peer {
        ControlAccess.Peer(pid: 42, uid: uid, gid: gid, groups: groups)
    }

    @Test func rootAndBatonsOwnUserMayDoEverything() {
        var access = ControlAccess(controlGroup: deploy, readOnlyGroup: monitoring)
        access.owner = 1000
        for command in ControlRequest.Command.allCases {
            #expect(access.refusal(of: command, by: peer(uid: 0)) == nil)
            #expect(access.refusal(of: command, by: peer(uid: 1000)) == nil)
        }
    }

    @Test func groupsGetTheirCommandsByPrimaryOrSupplementaryMembership() {
        var access = ControlAccess(controlGroup: deploy, readOnlyGroup: monitoring)
        access.owner = 1000
        for deployer in [peer(uid: 1500, gid: 2001), peer(uid: 1500, groups: [100, 2001])] {
            #expect(access.refusal(of: .status, by: deployer) == nil)
            #expect(access.refusal(of: .reload, by: deployer) == nil)
            #expect(access.refusal(of: .scale, by: deployer) == nil)
            #expect(access.refusal(of: .stop, by: deployer) != nil)
            #expect(access.refusal(of: .upgrade, by: deployer) != nil)
        }
        let monitor = peer(uid: 1600, groups: [2002])
        #expect(access.refusal(of: .status, by: monitor) == nil)
        #expect(
            access.refusal(of: .reload, by: monitor) == """
                uid 1600 (pid 42) may not run reload: members of control_group "deploy" may run status, reload, scale, promote and rollback; \
                members of control_readonly_group "monitoring" may run status; root and uid 1000 may do everything; nothing changed
                """)
        #expect(access.refusal(of: .status, by: peer(uid: 1700, groups: [100])) != nil)
    }

    /// Whoever may start a rollout (a canary) may finish it: promote or roll it back.
    @Test func aDeployerMayPromoteOrRollBackTheCanaryItStarted() {
        var access = ControlAccess(controlGroup: deploy, readOnlyGroup: monitoring)
        access.owner = 1000
        let deployer = peer(uid: 1500, groups: [2001])
        #expect(access.refusal(of: .promote, by: deployer) == nil)
        #expect(access.refusal(of: .rollback, by: deployer) == nil)
        let monitor = peer(uid: 1600, groups: [2002])
        #expect(access.refusal(of: .promote, by: monitor) != nil)
        #expect(access.refusal(of: .rollback, by: monitor) != nil)
    }

    @Test func withoutGroupsOnlyRootAndTheOwnerMay() {
        var access = ControlAccess()
        access.owner = 1000
        #expect(
            access.refusal(of: .status, by: peer(uid: 1500, gid: 2001, groups: [2002]))
                == "uid 1500 (pid 42) may not run status: root and uid 1000 may do everything; nothing changed")
    }
}
