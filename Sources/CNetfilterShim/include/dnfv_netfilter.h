// C side of docknfv's libiptc backend: building x_tables entries (variable-length structures
// Swift cannot lay out: XT_ALIGN, flexible `elems`), comparing them with the kernel's, and one
// family-generic wrapper over libip4tc / libip6tc (whose headers cannot both be imported into Swift).
#ifndef DOCKNFV_NETFILTER_H
#define DOCKNFV_NETFILTER_H

#include <stddef.h>
#include <stdint.h>
// glibc's <net/if.h> must come before any <linux/if.h> (pulled in by the netfilter headers) so
// that linux/libc-compat.h suppresses the duplicate definitions.
#include <net/if.h>
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter/xt_tcpudp.h>
#include <linux/netfilter/xt_multiport.h>
#include <linux/netfilter/xt_conntrack.h>
#include <linux/netfilter/xt_mark.h>
#include <linux/netfilter/xt_comment.h>
#include <linux/netfilter/xt_limit.h>
#include <linux/netfilter/xt_iprange.h>
#include <linux/netfilter/xt_set.h>
#include <linux/netfilter/xt_addrtype.h>
#include <linux/netfilter/xt_owner.h>
#include <linux/netfilter/xt_LOG.h>
#include <linux/netfilter/xt_NFLOG.h>
#include <linux/netfilter/xt_TCPMSS.h>
#include <linux/netfilter/nf_nat.h>

/// ICMP match payloads (from ip_tables.h / ip6_tables.h, restated so Swift sees them without
/// importing the libiptc headers).
struct dnfv_icmp { uint8_t type; uint8_t code[2]; uint8_t invflags; };
/// REJECT payloads: one 32-bit "with" value for both families.
struct dnfv_reject { uint32_t with; };

/// A rule entry under construction.
typedef struct dnfv_entry dnfv_entry;

dnfv_entry *dnfv_entry_new(int family);
void dnfv_entry_free(dnfv_entry *entry);
/// which: 0 = source, 1 = destination. addr/mask: 4 or 16 bytes, network order.
void dnfv_entry_set_addr(dnfv_entry *entry, int which, const uint8_t *addr, const uint8_t *mask, int invert);
/// which: 0 = in, 1 = out. A trailing '+' is a wildcard. Returns -1 if the name is too long.
int dnfv_entry_set_iface(dnfv_entry *entry, int which, const char *name, int invert);
void dnfv_entry_set_proto(dnfv_entry *entry, uint16_t proto, int invert);
void dnfv_entry_set_goto(dnfv_entry *entry);
/// Appends a match with the given payload. Returns -1 on a bad name or out of memory.
int dnfv_entry_add_match(dnfv_entry *entry, const char *name, uint8_t revision, const void *data, size_t size);
/// Sets the target. data == NULL: a standard target (ACCEPT, DROP, RETURN) or a jump to a chain.
int dnfv_entry_set_target(dnfv_entry *entry, const char *name, uint8_t revision, const void *data, size_t size);
/// The finished entry (valid until the builder is freed or changed).
const void *dnfv_entry_bytes(dnfv_entry *entry, size_t *size);

/// 1 when a kernel entry (from dnfv_tc_first_rule…) says the same as a built one: same header,
/// same matches and target, ignoring counters and the kernel-private part of matches (limit's
/// state). Jump targets are compared by the chain names given.
int dnfv_entry_equal(int family, const void *built, const char *built_target,
                     const void *kernel, const char *kernel_target);

/// libiptc, by family (AF_INET → libip4tc, AF_INET6 → libip6tc). Errors leave errno set;
/// dnfv_tc_strerror explains them.
void *dnfv_tc_init(int family, const char *table);
void dnfv_tc_free(int family, void *handle);
int dnfv_tc_commit(int family, void *handle);
const char *dnfv_tc_strerror(int family, int err);
int dnfv_tc_is_chain(int family, const char *chain, void *handle);
int dnfv_tc_builtin(int family, const char *chain, void *handle);
int dnfv_tc_create_chain(int family, const char *chain, void *handle);
int dnfv_tc_flush_entries(int family, const char *chain, void *handle);
int dnfv_tc_delete_chain(int family, const char *chain, void *handle);
int dnfv_tc_append(int family, const char *chain, const void *entry, void *handle);
int dnfv_tc_insert(int family, const char *chain, const void *entry, unsigned int rulenum, void *handle);
int dnfv_tc_delete_num(int family, const char *chain, unsigned int rulenum, void *handle);
int dnfv_tc_set_policy(int family, const char *chain, const char *policy, void *handle);
/// The built-in chain's policy, or NULL for a user chain.
const char *dnfv_tc_get_policy(int family, const char *chain, void *handle);
const char *dnfv_tc_first_chain(int family, void *handle);
const char *dnfv_tc_next_chain(int family, void *handle);
const void *dnfv_tc_first_rule(int family, const char *chain, void *handle);
const void *dnfv_tc_next_rule(int family, const void *previous, void *handle);
const char *dnfv_tc_get_target(int family, const void *entry, void *handle);
/// The first match of an entry with this name, and its payload size; NULL if none.
const void *dnfv_entry_find_match(int family, const void *entry, const char *name, size_t *size);

/// The kernel index of an ipset by name (what the `set` match carries). 0 on success.
int dnfv_ipset_index(const char *name, uint16_t *index);

#endif
