#include "dnfv_netfilter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <libiptc/libiptc.h>
#include <libiptc/libip6tc.h>
#include <linux/netfilter/ipset/ip_set.h>
#include <linux/netfilter/nfnetlink.h>
#include <libmnl/libmnl.h>

struct dnfv_entry {
    int family;
    unsigned char *buffer;   // header, then matches, then target
    size_t header;           // sizeof(ipt_entry) or sizeof(ip6t_entry)
    size_t matches;          // bytes of matches after the header
    unsigned char *target;   // target bytes (separately, appended at the end)
    size_t target_size;
    size_t capacity;
};

dnfv_entry *dnfv_entry_new(int family) {
    dnfv_entry *e = calloc(1, sizeof(*e));
    if (!e) return NULL;
    e->family = family;
    e->header = family == AF_INET6 ? sizeof(struct ip6t_entry) : sizeof(struct ipt_entry);
    e->capacity = e->header + 512;
    e->buffer = calloc(1, e->capacity);
    if (!e->buffer) { free(e); return NULL; }
    return e;
}

void dnfv_entry_free(dnfv_entry *e) {
    if (!e) return;
    free(e->buffer);
    free(e->target);
    free(e);
}

static int reserve(dnfv_entry *e, size_t extra) {
    size_t need = e->header + e->matches + extra;
    if (need <= e->capacity) return 0;
    size_t capacity = need * 2;
    unsigned char *grown = realloc(e->buffer, capacity);
    if (!grown) return -1;
    memset(grown + e->capacity, 0, capacity - e->capacity);
    e->buffer = grown;
    e->capacity = capacity;
    return 0;
}

void dnfv_entry_set_addr(dnfv_entry *e, int which, const uint8_t *addr, const uint8_t *mask, int invert) {
    if (e->family == AF_INET6) {
        struct ip6t_ip6 *ip = &((struct ip6t_entry *)e->buffer)->ipv6;
        memcpy(which ? &ip->dst : &ip->src, addr, 16);
        memcpy(which ? &ip->dmsk : &ip->smsk, mask, 16);
        if (invert) ip->invflags |= which ? IP6T_INV_DSTIP : IP6T_INV_SRCIP;
    } else {
        struct ipt_ip *ip = &((struct ipt_entry *)e->buffer)->ip;
        memcpy(which ? &ip->dst : &ip->src, addr, 4);
        memcpy(which ? &ip->dmsk : &ip->smsk, mask, 4);
        if (invert) ip->invflags |= which ? IPT_INV_DSTIP : IPT_INV_SRCIP;
    }
}

int dnfv_entry_set_iface(dnfv_entry *e, int which, const char *name, int invert) {
    size_t len = strlen(name);
    if (len == 0 || len >= IFNAMSIZ) return -1;
    char *via; unsigned char *mask;
    uint8_t *invflags;
    if (e->family == AF_INET6) {
        struct ip6t_ip6 *ip = &((struct ip6t_entry *)e->buffer)->ipv6;
        via = which ? ip->outiface : ip->iniface;
        mask = which ? ip->outiface_mask : ip->iniface_mask;
        invflags = &ip->invflags;
    } else {
        struct ipt_ip *ip = &((struct ipt_entry *)e->buffer)->ip;
        via = which ? ip->outiface : ip->iniface;
        mask = which ? ip->outiface_mask : ip->iniface_mask;
        invflags = &ip->invflags;
    }
    memset(via, 0, IFNAMSIZ);
    memset(mask, 0, IFNAMSIZ);
    memcpy(via, name, len);
    // As iptables does: "eth+" matches the prefix; otherwise the whole name and its NUL.
    if (name[len - 1] == '+') memset(mask, 0xff, len - 1);
    else memset(mask, 0xff, len + 1);
    if (invert) *invflags |= which ? IPT_INV_VIA_OUT : IPT_INV_VIA_IN; // same bits for IPv6
    return 0;
}

void dnfv_entry_set_proto(dnfv_entry *e, uint16_t proto, int invert) {
    if (e->family == AF_INET6) {
        struct ip6t_ip6 *ip = &((struct ip6t_entry *)e->buffer)->ipv6;
        ip->proto = proto;
        ip->flags |= IP6T_F_PROTO;
        if (invert) ip->invflags |= IP6T_INV_PROTO;
    } else {
        struct ipt_ip *ip = &((struct ipt_entry *)e->buffer)->ip;
        ip->proto = proto;
        if (invert) ip->invflags |= IPT_INV_PROTO;
    }
}

void dnfv_entry_set_goto(dnfv_entry *e) {
    if (e->family == AF_INET6) ((struct ip6t_entry *)e->buffer)->ipv6.flags |= IP6T_F_GOTO;
    else ((struct ipt_entry *)e->buffer)->ip.flags |= IPT_F_GOTO;
}

int dnfv_entry_add_match(dnfv_entry *e, const char *name, uint8_t revision, const void *data, size_t size) {
    if (strlen(name) >= XT_EXTENSION_MAXNAMELEN) return -1;
    size_t total = XT_ALIGN(sizeof(struct xt_entry_match) + size);
    if (reserve(e, total) != 0) return -1;
    struct xt_entry_match *m = (struct xt_entry_match *)(e->buffer + e->header + e->matches);
    memset(m, 0, total);
    m->u.user.match_size = (uint16_t)total;
    strcpy(m->u.user.name, name);
    m->u.user.revision = revision;
    if (size) memcpy(m->data, data, size);
    e->matches += total;
    return 0;
}

int dnfv_entry_set_target(dnfv_entry *e, const char *name, uint8_t revision, const void *data, size_t size) {
    if (strlen(name) >= XT_EXTENSION_MAXNAMELEN) return -1;
    size_t total = data ? XT_ALIGN(sizeof(struct xt_entry_target) + size) : XT_ALIGN(sizeof(struct xt_standard_target));
    unsigned char *t = calloc(1, total);
    if (!t) return -1;
    struct xt_entry_target *target = (struct xt_entry_target *)t;
    target->u.user.target_size = (uint16_t)total;
    strcpy(target->u.user.name, name);
    target->u.user.revision = revision;
    if (data && size) memcpy(target->data, data, size);
    free(e->target);
    e->target = t;
    e->target_size = total;
    return 0;
}

const void *dnfv_entry_bytes(dnfv_entry *e, size_t *size) {
    if (!e->target || reserve(e, e->target_size) != 0) return NULL;
    memcpy(e->buffer + e->header + e->matches, e->target, e->target_size);
    uint16_t target_offset = (uint16_t)(e->header + e->matches);
    uint16_t next_offset = (uint16_t)(e->header + e->matches + e->target_size);
    if (e->family == AF_INET6) {
        struct ip6t_entry *entry = (struct ip6t_entry *)e->buffer;
        entry->target_offset = target_offset;
        entry->next_offset = next_offset;
    } else {
        struct ipt_entry *entry = (struct ipt_entry *)e->buffer;
        entry->target_offset = target_offset;
        entry->next_offset = next_offset;
    }
    *size = next_offset;
    return e->buffer;
}

/// How many payload bytes of a match userspace owns (the rest is kernel state).
static size_t user_size(const struct xt_entry_match *m, size_t payload) {
    if (strcmp(m->u.user.name, "limit") == 0) return offsetof(struct xt_rateinfo, prev);
    return payload;
}

static void offsets(int family, const void *entry, size_t *header, uint16_t *target_offset, uint16_t *next_offset) {
    if (family == AF_INET6) {
        const struct ip6t_entry *e = entry;
        *header = sizeof(*e); *target_offset = e->target_offset; *next_offset = e->next_offset;
    } else {
        const struct ipt_entry *e = entry;
        *header = sizeof(*e); *target_offset = e->target_offset; *next_offset = e->next_offset;
    }
}

int dnfv_entry_equal(int family, const void *a, const char *a_target, const void *b, const char *b_target) {
    size_t header; uint16_t at, an, bt, bn;
    offsets(family, a, &header, &at, &an);
    offsets(family, b, &header, &bt, &bn);
    size_t ip = family == AF_INET6 ? sizeof(struct ip6t_ip6) : sizeof(struct ipt_ip);
    if (at != bt || an != bn || memcmp(a, b, ip) != 0) return 0;
    const unsigned char *pa = (const unsigned char *)a + header, *pb = (const unsigned char *)b + header;
    const unsigned char *ea = (const unsigned char *)a + at;
    while (pa < ea) {
        const struct xt_entry_match *ma = (const void *)pa, *mb = (const void *)pb;
        if (ma->u.match_size != mb->u.match_size || ma->u.match_size < sizeof(*ma)) return 0;
        if (strncmp(ma->u.user.name, mb->u.user.name, XT_EXTENSION_MAXNAMELEN) != 0) return 0;
        if (ma->u.user.revision != mb->u.user.revision) return 0;
        size_t payload = ma->u.match_size - sizeof(*ma);
        if (memcmp(ma->data, mb->data, user_size(ma, payload)) != 0) return 0;
        pa += ma->u.match_size;
        pb += mb->u.match_size;
    }
    if (strcmp(a_target ? a_target : "", b_target ? b_target : "") != 0) return 0;
    const struct xt_entry_target *ta = (const void *)ea, *tb = (const void *)((const unsigned char *)b + bt);
    if (ta->u.target_size != tb->u.target_size) return 0;
    if (ta->u.target_size == XT_ALIGN(sizeof(struct xt_standard_target))
        && (strcmp(ta->u.user.name, "") == 0 || strcmp(ta->u.user.name, XT_STANDARD_TARGET) == 0
            || strcmp(a_target ? a_target : "", ta->u.user.name) == 0)) {
        return 1; // standard verdicts and jumps: the names compared above say it all
    }
    size_t payload = ta->u.target_size - sizeof(*ta);
    return memcmp(ta->data, tb->data, payload) == 0 && ta->u.user.revision == tb->u.user.revision;
}

const void *dnfv_entry_find_match(int family, const void *entry, const char *name, size_t *size) {
    size_t header; uint16_t t, n;
    offsets(family, entry, &header, &t, &n);
    const unsigned char *p = (const unsigned char *)entry + header, *end = (const unsigned char *)entry + t;
    while (p < end) {
        const struct xt_entry_match *m = (const void *)p;
        if (m->u.match_size < sizeof(*m)) return NULL;
        if (strncmp(m->u.user.name, name, XT_EXTENSION_MAXNAMELEN) == 0) {
            *size = m->u.match_size - sizeof(*m);
            return m->data;
        }
        p += m->u.match_size;
    }
    return NULL;
}

// ---- libiptc by family

#define BY_FAMILY(family, v4, v6) ((family) == AF_INET6 ? (v6) : (v4))

void *dnfv_tc_init(int family, const char *table) {
    return family == AF_INET6 ? (void *)ip6tc_init(table) : (void *)iptc_init(table);
}
void dnfv_tc_free(int family, void *h) { if (family == AF_INET6) ip6tc_free(h); else iptc_free(h); }
int dnfv_tc_commit(int family, void *h) { return BY_FAMILY(family, iptc_commit(h), ip6tc_commit(h)); }
const char *dnfv_tc_strerror(int family, int err) { return BY_FAMILY(family, iptc_strerror(err), ip6tc_strerror(err)); }
int dnfv_tc_is_chain(int family, const char *c, void *h) { return BY_FAMILY(family, iptc_is_chain(c, h), ip6tc_is_chain(c, h)); }
int dnfv_tc_builtin(int family, const char *c, void *h) { return BY_FAMILY(family, iptc_builtin(c, h), ip6tc_builtin(c, h)); }
int dnfv_tc_create_chain(int family, const char *c, void *h) { return BY_FAMILY(family, iptc_create_chain(c, h), ip6tc_create_chain(c, h)); }
int dnfv_tc_flush_entries(int family, const char *c, void *h) { return BY_FAMILY(family, iptc_flush_entries(c, h), ip6tc_flush_entries(c, h)); }
int dnfv_tc_delete_chain(int family, const char *c, void *h) { return BY_FAMILY(family, iptc_delete_chain(c, h), ip6tc_delete_chain(c, h)); }
int dnfv_tc_append(int family, const char *c, const void *e, void *h) {
    return BY_FAMILY(family, iptc_append_entry(c, e, h), ip6tc_append_entry(c, e, h));
}
int dnfv_tc_insert(int family, const char *c, const void *e, unsigned int n, void *h) {
    return BY_FAMILY(family, iptc_insert_entry(c, e, n, h), ip6tc_insert_entry(c, e, n, h));
}
int dnfv_tc_delete_num(int family, const char *c, unsigned int n, void *h) {
    return BY_FAMILY(family, iptc_delete_num_entry(c, n, h), ip6tc_delete_num_entry(c, n, h));
}
int dnfv_tc_set_policy(int family, const char *c, const char *p, void *h) {
    return BY_FAMILY(family, iptc_set_policy(c, p, NULL, h), ip6tc_set_policy(c, p, NULL, h));
}
const char *dnfv_tc_get_policy(int family, const char *c, void *h) {
    struct xt_counters counters;
    return BY_FAMILY(family, iptc_get_policy(c, &counters, h), ip6tc_get_policy(c, &counters, h));
}
const char *dnfv_tc_first_chain(int family, void *h) { return BY_FAMILY(family, iptc_first_chain(h), ip6tc_first_chain(h)); }
const char *dnfv_tc_next_chain(int family, void *h) { return BY_FAMILY(family, iptc_next_chain(h), ip6tc_next_chain(h)); }
const void *dnfv_tc_first_rule(int family, const char *c, void *h) {
    return family == AF_INET6 ? (const void *)ip6tc_first_rule(c, h) : (const void *)iptc_first_rule(c, h);
}
const void *dnfv_tc_next_rule(int family, const void *prev, void *h) {
    return family == AF_INET6 ? (const void *)ip6tc_next_rule(prev, h) : (const void *)iptc_next_rule(prev, h);
}
const char *dnfv_tc_get_target(int family, const void *e, void *h) {
    return family == AF_INET6 ? ip6tc_get_target(e, h) : iptc_get_target(e, h);
}

// ---- ipset: the kernel index of a set, as the `set` match needs it

int dnfv_ipset_index(const char *name, uint16_t *index) {
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return -1;
    struct ip_set_req_version version = { .op = IP_SET_OP_VERSION };
    socklen_t size = sizeof(version);
    if (getsockopt(fd, SOL_IP, SO_IP_SET, &version, &size) != 0) { int e = errno; close(fd); errno = e; return -1; }
    struct ip_set_req_get_set req = { .op = IP_SET_OP_GET_BYNAME, .version = version.version };
    if (strlen(name) >= IPSET_MAXNAMELEN) { close(fd); errno = ENAMETOOLONG; return -1; }
    strcpy(req.set.name, name);
    size = sizeof(req);
    int rc = getsockopt(fd, SOL_IP, SO_IP_SET, &req, &size);
    int e = errno;
    close(fd);
    if (rc != 0) { errno = e; return -1; }
    if (req.set.index == IPSET_INVALID_ID) { errno = ENOENT; return -1; }
    *index = req.set.index;
    return 0;
}
