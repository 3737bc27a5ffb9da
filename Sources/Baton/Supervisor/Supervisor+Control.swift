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
                    responder.send(.failure("reload: unknown strategy \(given); expected \"all-at-once\" or \"rolling\"; nothing changed"))
                    return
                }
                if let batch = request.batch, !Settings.batch.accepts(batch) {
                    responder.send(.failure("reload: expected a batch of 1 to \(Settings.slots.upperBound) slots, got \(batch); nothing changed"))
                    return
                }
                options.strategy = strategy
                options.batch = request.batch
            }
            if request.canary != nil || request.weight != nil || request.hold != nil || request.after != nil {
                switch canary(request) {
                case .success(let canary): options.canary = canary
                case .failure(let refusal):
                    responder.send(.failure("reload: \(refusal.reason); nothing changed"))
                    return
                }
            }
            feed(.reloadRequested(reloads.request(from: responder, wait: request.wait ?? false), options))
        case .promote, .rollback:
            let promoting = request.command == .promote
            switch machine.canaryCommand(promoting: promoting) {
            case .failure(let refusal):
                responder.send(.failure("\(request.command.rawValue): \(refusal.reason); nothing changed"))
            case .success(let generation):
                responder.send(
                    ControlReply(
                        ok: true, final: true,
                        message: promoting ? "promoting the canary of generation \(generation)" : "rolling back the canary of generation \(generation)"))
                feed(promoting ? .promoteRequested : .rollbackRequested)
            }
        case .scale:
            guard let count = request.workers, Settings.workerCount.accepts(count) else {
                let given = request.workers.map { "\($0)" } ?? "no \"workers\""
                responder.send(.failure("scale: expected a number of workers from 1 to 1024, got \(given); nothing changed"))
                return
            }
            logger.info("scaling to \(count) worker(s): reloading")
            feed(.reloadRequested(reloads.request(from: responder, wait: request.wait ?? false), ReloadOptions(workers: count)))
        case .upgrade:
            upgrade(answering: responder)
        case .stop:
            responder.send(ControlReply(ok: true, final: true, message: "stopping: draining every worker"))
            feed(.stopRequested)
        }
    }

    /// The canary a reload request asks for, as the machine checks it against the service
    /// as it serves now.
    func canary(_ request: ControlRequest) -> Result<Canary, RolloutStateMachine.CanaryRefusal> {
        guard let workers = request.canary else {
            return .failure(.init(reason: "\"weight\", \"hold\" and \"after\" are for a canary: give \"canary\", its number of workers"))
        }
        return machine.canary(workers: workers, weight: request.weight, hold: request.hold, after: request.after)
    }
}
