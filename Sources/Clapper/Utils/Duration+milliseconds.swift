extension Duration {
    /// Whole milliseconds (sub-millisecond parts dropped), as Redis leases and `PX` take them.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds &* 1000 &+ attoseconds / 1_000_000_000_000_000
    }
}
