// Baton's public API speaks in BatonCore's types (listener addresses, the control
// protocol, system errors), so a program that imports Baton gets them too, as `NIO`
// re-exports `NIOCore`.
@_exported import BatonCore
