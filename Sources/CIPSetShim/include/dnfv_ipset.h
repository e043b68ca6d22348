// ipset over raw nfnetlink (libmnl): no libipset, whose default error handler calls exit(1).
// A separate target from the netfilter shim: <linux/netfilter/ipset/ip_set.h> and libmnl's
// linux headers clash when mixed with libiptc's in one translation unit.
#ifndef DOCKNFV_IPSET_H
#define DOCKNFV_IPSET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

/// One element: an address (4 or 16 bytes, network order) with an optional prefix length
/// (cidr 0 = none), an optional protocol + port (proto 0 = none) and an optional mark (has_mark),
/// as hash:ip, hash:net, hash:ip,port and hash:ip,mark use them.
struct dnfv_ipset_elem {
    uint8_t addr[16];
    uint8_t cidr;
    uint8_t proto;
    uint16_t port;
    uint32_t mark;
    uint8_t has_mark;
};

/// All calls return 0, or -1 with errno set to the kernel's error — an errno or one of ipset's
/// private codes (4097…), which dnfv_ipset_strerror explains.
int dnfv_ipset_create(const char *name, const char *type, uint8_t revision, uint8_t family, uint32_t maxelem);
/// cmd: 3 destroy, 4 flush, 5 rename (name2 = new name), 6 swap (name2 = other set).
int dnfv_ipset_simple(int cmd, const char *name, const char *name2);
/// cmd: 9 add, 10 del, 11 test. Elements go in batches in as few messages as fit.
/// exist_ok: adding what exists / deleting what is absent is not an error.
int dnfv_ipset_adt(int cmd, const char *name, uint8_t family, const struct dnfv_ipset_elem *elems, size_t count, int exist_ok);
/// The kernel's supported revision range of a set type for a family.
int dnfv_ipset_type_revisions(const char *type, uint8_t family, uint8_t *min, uint8_t *max);
/// Lists a set: its type and family, and its elements. `elems` receives up to `capacity`.
/// Returns the element count (which may exceed capacity), or -1.
long dnfv_ipset_list(const char *name, char *type, size_t type_len, uint8_t *family,
                     struct dnfv_ipset_elem *elems, size_t capacity);
/// Names of all sets, NUL-separated in buf; returns how many.
long dnfv_ipset_names(char *buf, size_t len);
/// Text for an error code (errno or ipset private code).
const char *dnfv_ipset_strerror(int code);

#endif
