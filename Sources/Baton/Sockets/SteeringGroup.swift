import Glibc

/// Placeholder until the steering program lands: always unavailable.
final class SteeringGroup {
    init(capacity: UInt32) throws(SystemError) {
        throw SystemError("bpf", errno: ENOSYS, subject: "steering program")
    }

    func attach(to fd: Int32) throws(SystemError) {}
    func steer(to sockets: [Int32]) throws(SystemError) {}
    func close() {}
}
