/// Reading the configuration again for a reload.
extension Supervisor {
    /// Re-reads the configuration for a reload, with the reload's options applied, and
    /// opens its new sockets.
    func loadConfiguration(_ options: ReloadOptions) {
        // Off the event loop: status, /metrics and worker exits are handled meanwhile.
        source.load(on: eventLoop) { [self] loaded in
            do {
                var configuration = try loaded.get()
                try checkReloadable(configuration)
                if let scaledTo = reloads.scaledTo { configuration.workers.count = scaledTo }
                let prepared = try sockets.prepare(options.applied(to: configuration))
                // The scale was accepted: later reloads keep its count.
                if let workers = options.workers { reloads.scaledTo = workers }
                feed(.configurationLoaded(prepared, canary: options.canary))
            } catch {
                feed(.configurationRejected("\(error)"))
            }
        }
    }

    /// Throws what a configuration, valid in itself, changes that a reload cannot.
    func checkReloadable(_ configuration: Configuration) throws(ConfigurationError) {
        guard configuration.controlSocket == controlSocket else {
            throw ConfigurationError(
                source: source.name, key: "control_socket", value: configuration.controlSocket.quoted,
                problem: "the control socket cannot move at a reload; it stays at \(controlSocket.quoted) until Baton restarts")
        }
        if let serving = machine.serving?.configuration, ControlAccess(configuration) != ControlAccess(serving) {
            throw ConfigurationError(
                source: source.name, key: "control_group",
                problem: "who may use the control socket (control_group, control_readonly_group) cannot change at a reload; restart Baton to change it")
        }
    }
}
