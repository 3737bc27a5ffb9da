#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// `batonctl status` output: a table for people, JSON for programs.
public enum StatusFormatter {
    /// The status as `batonctl status --json` prints it: indented, keys sorted.
    public static func json(_ status: StatusReport) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: (try? encoder.encode(status)) ?? Data(), as: UTF8.self) + "\n"
    }

    /// The status as `batonctl status` prints it: a header, a row per worker and per
    /// restarting slot, a row per listening socket, the last five reloads.
    public static func table(_ status: StatusReport) -> String {
        var text = "baton \(status.pid): \(status.phase); configuration: \(status.configuration)\n"
        text += "command: \(status.command.joined(separator: " "))\n"
        if let scaledTo = status.scaledTo {
            text += "scaled to \(scaledTo) worker(s) by batonctl scale\n"
        }
        if let rollout = status.rollout {
            let slots = { (slots: [Int]) in slots.isEmpty ? "none" : slots.map(String.init).joined(separator: ", ") }
            if let canary = rollout.canary {
                let state = canary.slots.isEmpty ? "starting \(canary.workers) worker(s)" : "slots \(slots(canary.slots))"
                let hold =
                    canary.holdLeft.map { "; \(Int($0.rounded()))s left in the hold, then \(canary.after ?? "nothing")" }
                    ?? "; holds until batonctl promote or batonctl rollback"
                text +=
                    "canary: generation \(rollout.to) (\(state)) takes about \(canary.weight)% of new connections beside generation \(rollout.from)\(hold)\n"
                if let connections = canary.connections {
                    let shares = connections.map { count in
                        let percent = (count.share * 1000).rounded() / 10
                        return "generation \(count.generation) \(count.connections) (\(percent)%)"
                    }
                    text += "new connections since the canary took its share: \(shares.joined(separator: ", "))\n"
                }
            } else if let reason = rollout.rollingBack {
                text +=
                    "rolling back: generation \(rollout.to) failed (\(reason)); slots still to give back to generation \(rollout.from): \(slots(rollout.replacedSlots)); starting again: \(slots(rollout.batchSlots))\n"
            } else {
                text +=
                    "rolling: generation \(rollout.to) replaces generation \(rollout.from), \(rollout.batch) slot(s) at a time; replaced: \(slots(rollout.replacedSlots)); starting: \(slots(rollout.batchSlots))\n"
            }
        }
        if status.pendingReloads > 0 {
            text += "reloads waiting: \(status.pendingReloads)\n"
        }
        if let dropped = status.droppedOutputBytes, dropped > 0 {
            text += "worker output dropped: \(dropped) bytes (Baton's own output was not read fast enough)\n"
        }
        var rows = [["GEN", "ROLE", "SLOT", "PID", "STATE", "RESTARTS", "UPTIME", "STATUS"]]
        for generation in status.generations {
            for worker in generation.workers {
                rows.append([
                    "\(generation.number)", generation.role.rawValue, "\(worker.slot)", worker.pid.map { "\($0)" } ?? "-",
                    worker.state.rawValue, "\(worker.restarts)", worker.uptime.map(seconds) ?? "-", worker.status ?? "",
                ])
            }
            for slot in generation.restartingSlots {
                let looping = generation.crashLoopingSlots.contains(slot)
                let restart = generation.slotRestarts?.first { $0.slot == slot }
                let why = [restart?.lastExit, restart?.nextStartIn.map { "next start in \(seconds($0))" }].compactMap { $0 }
                rows.append([
                    "\(generation.number)", generation.role.rawValue, "\(slot)", "-",
                    looping ? "crash-looping" : "restarting", restart.map { "\($0.restarts)" } ?? "", "-",
                    why.joined(separator: "; "),
                ])
            }
        }
        text += "\n" + columns(rows)
        if !status.listeners.isEmpty {
            // The FLOWS column only when a listener keeps UDP flows.
            let flows = status.listeners.contains { $0.sockets.contains { $0.flows != nil } }
            var header = ["LISTENER", "ADDRESS", "REUSEPORT", "SLOT", "GEN", "ROTATION", "QUEUED", "STEERED"]
            if flows { header.append("FLOWS") }
            var socketRows = [header]
            for listener in status.listeners {
                for socket in listener.sockets {
                    var row: [String] = [listener.name, listener.address, listener.reusePort.rawValue]
                    row.append(socket.slot.map { "\($0)" } ?? "all")
                    row.append(socket.generation.map { "\($0)" } ?? "-")
                    row.append(socket.inRotation.map { $0 ? "in" : "out" } ?? "-")
                    row.append(socket.queued.map { "\($0)/\(socket.backlog ?? 0)" } ?? "-")
                    row.append(socket.steered.map { "\($0)" } ?? "-")
                    if flows { row.append(socket.flows.map { "\($0)" } ?? "-") }
                    socketRows.append(row)
                }
            }
            text += "\n" + columns(socketRows)
        }
        if !status.reloads.isEmpty {
            text += "\nrecent reloads:\n"
            for reload in status.reloads.suffix(5) {
                let took = reload.finished.map { " in " + seconds($0 - reload.started) } ?? ""
                text += "  \(reload.result.rawValue)\(took): \(reload.message ?? "")\n"
            }
        }
        return text
    }

    private static func seconds(_ value: Double) -> String {
        if value < 1 { return "\(Int(value * 1000))ms" }
        if value < 120 { return "\(Int(value))s" }
        if value < 7200 { return "\(Int(value / 60))m" }
        return "\(Int(value / 3600))h"
    }

    private static func columns(_ rows: [[String]]) -> String {
        var widths = [Int](repeating: 0, count: rows.map(\.count).max() ?? 0)
        for row in rows {
            for (index, cell) in row.enumerated() {
                widths[index] = max(widths[index], cell.count)
            }
        }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count + 2)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }
}
