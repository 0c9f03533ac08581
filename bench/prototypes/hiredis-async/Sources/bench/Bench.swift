import CHiredisLoop
import Glibc
import NIOCore
import NIOPosix
import Redis
import Synchronization

// One process = one configuration. Usage:
//   bench <clapper-singleton|clapper-default|clapper-singleton-pool1|hiredis> --port N [--nio-executor] [--redis-pid P]
//         [--tasks 64] [--warm 1] [--secs 5]

let pairs = Atomic<Int>(0)
let running = Atomic<Bool>(true)
let failures = Atomic<Int>(0)

struct Usage {
    var user: Double, sys: Double, vcsw: Int, ivcsw: Int
    static func now() -> Usage {
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        return Usage(
            user: Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6,
            sys: Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6,
            vcsw: Int(ru.ru_nvcsw), ivcsw: Int(ru.ru_nivcsw))
    }
}

/// utime+stime of another process, in seconds (from /proc/PID/stat).
func processCPU(_ pid: Int) -> Double? {
    guard pid > 0, let f = fopen("/proc/\(pid)/stat", "r") else { return nil }
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 4096)
    guard fgets(&buf, Int32(buf.count), f) != nil else { return nil }
    let line = String(cString: buf)
    guard let close = line.lastIndex(of: ")") else { return nil }
    let fields = line[line.index(after: close)...].split(separator: " ")
    // fields[0] is state (field 3); utime is field 14, stime field 15.
    guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
    return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

// MARK: - hiredis async on one loop thread

// A throwaway benchmark, not product code. Safe as used: one task owns each Caller and sets
// `continuation` before submitting; the loop thread reads it only in the reply callback of that
// submission, and the task does not touch it again until resumed (hiredis's queue orders the two).
final class Caller: @unchecked Sendable {
    var continuation: UnsafeContinuation<Int32, Never>?
    let set: UnsafeMutablePointer<hcall>
    let publish: UnsafeMutablePointer<hcall>

    init(index: Int, value: String) {
        func argv(_ parts: [String]) -> (UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafeMutablePointer<Int>) {
            let v = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: parts.count)
            let l = UnsafeMutablePointer<Int>.allocate(capacity: parts.count)
            for (i, p) in parts.enumerated() {
                v[i] = UnsafePointer(strdup(p)!)
                l[i] = p.utf8.count
            }
            return (v, l)
        }
        set = .allocate(capacity: 1)
        publish = .allocate(capacity: 1)
        let s = argv(["SET", "bench:key:\(index)", value])
        let p = argv(["PUBLISH", "bench:channel", value])
        set.initialize(to: hcall(owner: nil, expect: 1, result: 0, argc: 3, argv: s.0, argvlen: s.1, next: nil))
        publish.initialize(to: hcall(owner: nil, expect: 2, result: 0, argc: 3, argv: p.0, argvlen: p.1, next: nil))
        let me = Unmanaged.passUnretained(self).toOpaque()
        set.pointee.owner = me
        publish.pointee.owner = me
    }

    func send(_ call: UnsafeMutablePointer<hcall>, on loop: OpaquePointer) async -> Int32 {
        await withUnsafeContinuation { continuation in
            self.continuation = continuation  // published to the loop thread by the queue's lock
            hloop_submit(loop, call)
        }
    }
}

let onReply: hloop_reply_fn = { call in
    let caller = Unmanaged<Caller>.fromOpaque(call!.pointee.owner).takeUnretainedValue()
    let continuation = caller.continuation!
    caller.continuation = nil
    continuation.resume(returning: call!.pointee.result)
}

// MARK: - main

@main
enum Bench {
    static func main() async {
        let args = CommandLine.arguments
        func option(_ name: String, _ fallback: String) -> String {
            if let i = args.firstIndex(of: name), i + 1 < args.count { return args[i + 1] }
            return fallback
        }
        let nioExecutor = args.contains("--nio-executor")
        if nioExecutor {
            guard NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor() else {
                fatalError("could not install NIO as the global executor")
            }
        }
        let mode = args.count > 1 ? args[1] : "hiredis"
        let port = Int(option("--port", "6379"))!
        let redisPID = Int(option("--redis-pid", "0"))!
        let taskCount = Int(option("--tasks", "64"))!
        let warm = Double(option("--warm", "1"))!
        let secs = Double(option("--secs", "5"))!
        let value = "v-0123456789abcdef"  // 18 bytes

        var client: RedisClient?
        var loop: OpaquePointer?
        var callers: [Caller] = []
        let work: @Sendable (Int) async -> Void

        switch mode {
        case "clapper-singleton", "clapper-default", "clapper-singleton-pool1":
            var configuration = RedisConfiguration(url: try! RedisURL("redis://127.0.0.1:\(port)"))
            if mode == "clapper-singleton-pool1" { configuration.poolSize = 1 }
            let c = mode == "clapper-default"
                ? RedisClient(configuration: configuration)
                : RedisClient(configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton)
            client = c
            work = { index in
                let set = RedisCommand("SET", "bench:key:\(index)", value)
                let publish = RedisCommand("PUBLISH", "bench:channel", value)
                while running.load(ordering: .relaxed) {
                    do {
                        guard case .status("OK") = try await c.send(set) else { failures.add(1, ordering: .relaxed); continue }
                        guard case .integer = try await c.send(publish) else { failures.add(1, ordering: .relaxed); continue }
                        pairs.add(1, ordering: .relaxed)
                    } catch {
                        failures.add(1, ordering: .relaxed)
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                }
            }
        case "hiredis":
            guard let l = hloop_create("127.0.0.1", Int32(port), onReply) else { fatalError("hloop_create failed") }
            loop = l
            callers = (0..<taskCount).map { Caller(index: $0, value: value) }
            let all = callers
            nonisolated(unsafe) let unsafeLoop = l
            work = { index in
                let caller = all[index]
                while running.load(ordering: .relaxed) {
                    guard await caller.send(caller.set, on: unsafeLoop) == 0 else { failures.add(1, ordering: .relaxed); continue }
                    guard await caller.send(caller.publish, on: unsafeLoop) == 0 else { failures.add(1, ordering: .relaxed); continue }
                    pairs.add(1, ordering: .relaxed)
                }
            }
        case "nio-minimal":
            // One connection per loop of NIO's singleton group, as Clapper with eventLoopGroup: .singleton.
            let loops = Array(MultiThreadedEventLoopGroup.singleton.makeIterator())
            var connections: [MinimalConnection] = []
            for loop in loops { connections.append(try! await MinimalConnection.connect(port: port, on: loop)) }
            let all = connections
            let turn = Atomic<Int>(0)
            work = { index in
                let set = resp(["SET", "bench:key:\(index)", value])
                let publish = resp(["PUBLISH", "bench:channel", value])
                while running.load(ordering: .relaxed) {
                    // The caller's own loop's connection when it runs on one, else round robin (as Clapper).
                    let connection: MinimalConnection
                    if let current = MultiThreadedEventLoopGroup.currentEventLoop, let own = all.first(where: { $0.channel.eventLoop === current }) {
                        connection = own
                    } else {
                        connection = all[turn.wrappingAdd(1, ordering: .relaxed).oldValue % all.count]
                    }
                    guard await connection.send(set, expect: 1) == 0 else { failures.add(1, ordering: .relaxed); continue }
                    guard await connection.send(publish, expect: 2) == 0 else { failures.add(1, ordering: .relaxed); continue }
                    pairs.add(1, ordering: .relaxed)
                }
            }
        default:
            fatalError("unknown mode \(mode)")
        }

        let clock = ContinuousClock()
        var startUsage = Usage.now(), endUsage = startUsage
        var startPairs = 0, endPairs = 0
        var startRedis: Double?, endRedis: Double?
        var startTime = clock.now, endTime = startTime
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<taskCount {
                group.addTask { await work(index) }
            }
            try? await Task.sleep(for: .seconds(warm))
            startPairs = pairs.load(ordering: .relaxed)
            startUsage = Usage.now()
            startRedis = processCPU(redisPID)
            startTime = clock.now
            try? await Task.sleep(for: .seconds(secs))
            endPairs = pairs.load(ordering: .relaxed)
            endUsage = Usage.now()
            endRedis = processCPU(redisPID)
            endTime = clock.now
            running.store(false, ordering: .relaxed)
            await group.waitForAll()
        }
        await client?.shutdown()
        var extra = ""
        let n = Double(endPairs - startPairs)
        if let l = loop {
            hloop_destroy(l)
            let s = hloop_get_stats(l)
            extra = " loop_iterations=\(s.iterations) blocking_waits=\(s.epoll_waits_blocking) eventfd_writes=\(s.wakeups_written) handle_read=\(s.handle_read) write_direct=\(s.handle_write_direct) write_epoll=\(s.handle_write_epoll) commands=\(s.commands)"
        }
        let elapsed = Double((endTime - startTime).components.attoseconds) / 1e18 + Double((endTime - startTime).components.seconds)
        let cpu = (endUsage.user - startUsage.user) + (endUsage.sys - startUsage.sys)
        let csw = Double((endUsage.vcsw - startUsage.vcsw) + (endUsage.ivcsw - startUsage.ivcsw))
        let redisCPU = (startRedis != nil && endRedis != nil) ? (endRedis! - startRedis!) : .nan
        func f(_ x: Double, _ d: Int = 2) -> String {
            let m = pow(10.0, Double(d)); return String((x * m).rounded() / m)
        }
        print("mode=\(mode) nio_executor=\(nioExecutor) tasks=\(taskCount) elapsed=\(f(elapsed, 3)) pairs=\(Int(n)) pairs_per_s=\(f(n / elapsed, 0))"
            + " cpu_us_per_pair=\(f(cpu / n * 1e6)) user_us=\(f((endUsage.user - startUsage.user) / n * 1e6)) sys_us=\(f((endUsage.sys - startUsage.sys) / n * 1e6))"
            + " cpu_util=\(f(cpu / elapsed)) csw_per_pair=\(f(csw / n, 3)) vcsw=\(endUsage.vcsw - startUsage.vcsw) ivcsw=\(endUsage.ivcsw - startUsage.ivcsw)"
            + " total_pairs=\(pairs.load(ordering: .relaxed)) redis_cpu_us_per_pair=\(f(redisCPU / n * 1e6)) redis_util=\(f(redisCPU / elapsed)) failures=\(failures.load(ordering: .relaxed))" + extra)
    }
}
