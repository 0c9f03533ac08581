import ArgumentParser
import Foundation

/// The summed VmRSS of `pids` in KiB (a process that is gone counts 0).
func residentKilobytes(_ pids: [Int]) -> Int {
    pids.reduce(0) { total, pid in
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return total + (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0)
    }
}

/// `--pids`: comma-separated process ids.
func parseProcessIDs(_ text: String) throws -> [Int] {
    try text.split(separator: ",").map { text in
        guard let pid = Int(text), pid > 0 else { throw ValidationError("--pids: not a process id: \(text)") }
        return pid
    }
}

/// The CPU time (user + system, seconds) and write syscalls (`syscw`: write, writev, sendmsg...)
/// of `pids` so far, summed (a process that is gone counts 0).
func processUsage(_ pids: [Int]) -> (cpuSeconds: Double, writes: Int) {
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    var cpu = 0.0
    var writes = 0
    for pid in pids {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        // utime and stime: fields 14 and 15, counted after the parenthesised name.
        if let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 12 { cpu += Double((Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)) / ticks }
        }
        let io = (try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8)) ?? ""
        let line = io.split(separator: "\n").first { $0.hasPrefix("syscw:") } ?? ""
        writes += Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return (cpu, writes)
}
