import NIOCore
import Synchronization

/// The open connections, so that the drain reaches each of them, including those set up
/// while it begins.
final class OpenConnections: Sendable {
    private let state = Mutex<(channels: [ObjectIdentifier: any Channel], draining: Bool)>(([:], false))

    func opened(_ channel: any Channel) {
        let draining = state.withLock { state in
            state.channels[ObjectIdentifier(channel)] = channel
            return state.draining
        }
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
        }
        if draining { channel.pipeline.fireUserInboundEventTriggered(KeepAliveDrainHandler.DrainEvent()) }
    }

    func drain() {
        let channels = state.withLock { state in
            state.draining = true
            return Array(state.channels.values)
        }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(KeepAliveDrainHandler.DrainEvent())
        }
    }
}
