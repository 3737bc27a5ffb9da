import Glibc

/// Control requests: each is answered at once, or turned into the machine's event.
extension Supervisor {
    func control(_ request: ControlRequest, _ responder: ControlResponder) {
        switch request.command {
        case .status:
            responder.send(ControlReply(ok: true, final: true, status: status()))
        case .reload:
            var options = ReloadOptions.configured
            if request.strategy != nil || request.batch != nil {
                guard let strategy = ReloadStrategy(rawValue: request.strategy ?? ReloadStrategy.rolling.rawValue) else {
                    let given = request.strategy.map { "\"\($0)\"" } ?? ""
                    responder.send(.failure("reload: unknown strategy \(given); expected \"all-at-once\" or \"rolling\"; nothing changed", .invalid))
                    return
                }
                if let batch = request.batch, !Settings.batch.accepts(batch) {
                    responder.send(.failure("reload: expected a batch of 1 to \(Settings.slots.upperBound) slots, got \(batch); nothing changed", .invalid))
                    return
                }
                options.strategy = strategy
                options.batch = request.batch
            }
            if request.canary != nil || request.weight != nil || request.hold != nil || request.after != nil {
                switch canary(request) {
                case .success(let canary): options.canary = canary
                case .failure(let refusal):
                    responder.send(.failure("reload: \(refusal.reason); nothing changed", refusal.failure))
                    return
                }
            }
            reloadChecked(request, responder, options)
        case .promote, .rollback:
            let promoting = request.command == .promote
            switch machine.canaryCommand(promoting: promoting) {
            case .failure(let refusal):
                responder.send(.failure("\(request.command.rawValue): \(refusal.reason); nothing changed", .refused))
            case .success(let generation):
                let message = promoting ? "promoting the canary of generation \(generation)" : "rolling back the canary of generation \(generation)"
                if request.reloadWait != .accepted, case .reloading(let ids) = machine.phase {
                    responder.send(ControlReply(ok: true, final: false, message: message))
                    reloads.follow(ids, by: responder, wait: request.reloadWait, rollingBack: !promoting)
                } else {
                    responder.send(ControlReply(ok: true, final: true, message: message))
                }
                feed(promoting ? .promoteRequested : .rollbackRequested)
            }
        case .scale:
            guard let count = request.workers, Settings.workerCount.accepts(count) else {
                let given = request.workers.map { "\($0)" } ?? "no \"workers\""
                responder.send(.failure("scale: expected a number of workers from 1 to 1024, got \(given); nothing changed", .invalid))
                return
            }
            logger.info("scaling to \(count) worker(s): reloading")
            reloadChecked(request, responder, ReloadOptions(workers: count))
        case .upgrade:
            upgrade(answering: responder)
        case .stop:
            let delay = stopBegan ? nil : machine.serving?.configuration.stopDelay
            let message =
                delay.map { "stopping: the workers serve for \(DurationFormat.string($0)) more (stop_delay), then drain" } ?? "stopping: draining every worker"
            responder.send(ControlReply(ok: true, final: request.wait != true, message: message))
            if request.wait == true { stopWaiters.append(responder) }
            beginStop()
        }
    }

    /// Asks for a reload. One that does not wait for its outcome still learns whether
    /// the configuration is valid: the ledger answers it once the file is read, and a
    /// reload that will wait its turn behind another has the file checked first.
    func reloadChecked(_ request: ControlRequest, _ responder: ControlResponder, _ options: ReloadOptions) {
        let wait = request.reloadWait
        let startsAtOnce = machine.phase == .running && machine.generations.count == 1
        guard wait == .accepted, !startsAtOnce else {
            feed(.reloadRequested(reloads.request(from: responder, wait: wait), options))
            return
        }
        source.load(on: eventLoop) { [self] loaded in
            do {
                try checkReloadable(try loaded.get())
            } catch {
                responder.send(.failure("\(request.command.rawValue) refused: \(error); nothing changed", .configuration))
                return
            }
            feed(.reloadRequested(reloads.request(from: responder, wait: wait), options))
        }
    }

    struct CanaryRefusal: Error {
        var reason: String
        /// Invalid unless said otherwise: most refusals are about the request's values.
        var failure = ControlFailure.invalid
    }

    /// The canary a reload request asks for, as the machine checks it against the service
    /// as it serves now. A refusal because Baton is busy (a reload under way, two
    /// generations alive) is a refusal for now; any other is about the request's values.
    func canary(_ request: ControlRequest) -> Result<Canary, CanaryRefusal> {
        guard let workers = request.canary else {
            return .failure(.init(reason: "\"weight\", \"hold\" and \"after\" are for a canary: give \"canary\", its number of workers"))
        }
        return machine.canary(workers: workers, weight: request.weight, hold: request.hold, after: request.after).mapError { refusal in
            let busy = machine.phase != .running || machine.generations.count != 1 || machine.serving == nil
            return CanaryRefusal(reason: refusal.reason, failure: busy ? .refused : .invalid)
        }
    }
}

extension ControlRequest {
    /// How long its asker waits, as `wait` and `drained` say.
    var reloadWait: ReloadWait {
        wait == true ? (drained == true ? .drained : .outcome) : .accepted
    }
}
