import Dispatch
import Synchronization

/// The demo's async route, `GET /quote?items=N`, handled in Swift concurrency
/// the way an async server framework (Hummingbird, Vapor) would run it:
/// route → service → an actor → the pricing work. Profiles show the pricing
/// loop under every awaiting caller (`applyDiscounts ← RateTable.price ←
/// QuoteService.quote ← AsyncRoutes.quote ← …`), not only under the executor.
enum AsyncRoutes {
    static func quote(items: Int, seed: UInt64) async -> [UInt8] {
        let cents = await QuoteService.quote(items: items, seed: seed)
        return Array("{\"items\":\(items),\"total_cents\":\(cents)}\n".utf8)
    }

    /// For the synchronous front end: runs the route in a task and waits.
    static func quoteBlocking(items: Int, seed: UInt64) -> [UInt8] {
        final class Box: @unchecked Sendable { var body: [UInt8] = [] }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            box.body = await quote(items: items, seed: seed)
            done.signal()
        }
        done.wait()
        return box.body
    }

    /// Tasks that call the route in a loop, as async clients of the API would.
    static func startLoad(tasks: Int) {
        for n in 0..<tasks {
            Task.detached {
                var seed = UInt64(n + 1) &* 0x9E3779B97F4A7C15
                while true {
                    seed &+= 1
                    _ = await quote(items: 24, seed: seed)
                    try? await Task.sleep(for: .milliseconds(2))
                }
            }
        }
    }
}

enum QuoteService {
    static func quote(items: Int, seed: UInt64) async -> Int {
        var total = 0
        for i in 0..<items {
            total &+= await RateTable.shared.price(sku: seed &* 31 &+ UInt64(i))
        }
        return total
    }
}

/// Shared pricing state: every item hops onto this actor.
actor RateTable {
    static let shared = RateTable()
    private var lookups = 0

    func price(sku: UInt64) async -> Int {
        lookups += 1
        return await Pricing.price(sku: sku, tier: lookups % 3)
    }
}

enum Pricing {
    static func price(sku: UInt64, tier: Int) async -> Int {
        applyDiscounts(sku: sku, tier: tier)
    }

    /// The CPU work of a quote: a few tens of microseconds of arithmetic.
    @inline(never)
    static func applyDiscounts(sku: UInt64, tier: Int) -> Int {
        var x = sku | 1
        for i in 0..<(20_000 + tier * 5_000) { x = x &* 6364136223846793005 &+ UInt64(i) }
        return Int(x % 10_000)
    }
}
