import Glibc

extension SteeringGroup {
    /// What to do when a steering group could not be made, by why: only a refusal
    /// (`EPERM`) is a missing capability; running out of descriptors is the limit's doing.
    static func remedy(for error: SystemError) -> String {
        switch error.errno {
        case EPERM, EACCES:
            "Run Baton as root or with CAP_BPF"
        case EMFILE, ENFILE:
            "Baton ran out of file descriptors: raise its descriptor limit (LimitNOFILE= in the unit, ulimit -n)"
        case ENOMEM:
            "The kernel could not allocate the program or its maps: check the memory lock limit (LimitMEMLOCK=) and free memory"
        default:
            "Steering needs Linux 5.14 or later and CAP_BPF"
        }
    }
}
