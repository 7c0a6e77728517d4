extension PprofServer {
    /// The average number of bytes between sampled allocations, like Go's
    /// `runtime.MemProfileRate`: 524288 (512 KiB) by default, 1 samples
    /// every allocation, 0 switches heap sampling off (allocations are then
    /// only forwarded to the allocator). Process-wide; takes effect at each
    /// thread's next allocation.
    public static var memoryProfileRate: Int {
        get { HeapSampler.rate }
        set { HeapSampler.rate = max(0, newValue) }
    }

    /// Whether this build samples allocations: false when the package was
    /// built without its `HeapProfiling` trait, or when another allocator
    /// took `malloc` before ours (then `/heap` and `/allocs` are empty).
    public static var isHeapProfilingAvailable: Bool {
        HeapSampler.isAvailable && HeapSampler.stats().isInterposed
    }
}
