import CNetfilterShim

/// Whether nf_tables holds tables in this namespace (what `iptables-nft` / `nft` would show).
/// docknfv writes legacy x_tables through libiptc; rules in nf_tables are evaluated as well, so
/// `status` warns when there are any.
public enum NFTablesProbe {
    /// "FAMILY NAME" per nf_tables table (e.g. "ip filter"); empty when there are none or nf_tables
    /// is unavailable.
    public static func tablesInUse() -> [String] {
        var buffer = [CChar](repeating: 0, count: 16384)
        guard dnfv_nft_tables(&buffer, buffer.count) > 0 else { return [] }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: "\n").map(String.init)
    }
}
