#include "dnfv_ipset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/ipset/ip_set.h>

#define BUFFER_SIZE (MNL_SOCKET_BUFFER_SIZE * 16)

struct session {
    struct mnl_socket *nl;
    unsigned int portid;
    unsigned int seq;
};

static int open_session(struct session *s) {
    s->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!s->nl) return -1;
    if (mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) { int e = errno; mnl_socket_close(s->nl); errno = e; return -1; }
    int size = BUFFER_SIZE;
    setsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    s->portid = mnl_socket_get_portid(s->nl);
    s->seq = (unsigned int)time(NULL);
    return 0;
}

static void close_session(struct session *s) { if (s->nl) mnl_socket_close(s->nl); }

static struct nlmsghdr *header(char *buf, struct session *s, int cmd, uint16_t flags, uint8_t family) {
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_IPSET << 8) | cmd;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    nlh->nlmsg_seq = ++s->seq;
    struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
    nfg->nfgen_family = family;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = 0;
    // Every ipset message carries the protocol version the kernel checks first.
    mnl_attr_put_u8(nlh, IPSET_ATTR_PROTOCOL, IPSET_PROTOCOL);
    return nlh;
}

/// Sends and waits for the ACK (or runs `cb` over dump replies). errno = kernel error on failure.
static int transact(struct session *s, struct nlmsghdr *nlh, mnl_cb_t cb, void *data) {
    if (mnl_socket_sendto(s->nl, nlh, nlh->nlmsg_len) < 0) return -1;
    char *buf = malloc(BUFFER_SIZE);
    if (!buf) { errno = ENOMEM; return -1; }
    int rc;
    unsigned int seq = nlh->nlmsg_seq;
    while ((rc = (int)mnl_socket_recvfrom(s->nl, buf, BUFFER_SIZE)) > 0) {
        rc = mnl_cb_run(buf, (size_t)rc, seq, s->portid, cb, data);
        if (rc <= MNL_CB_STOP) break;
    }
    int e = errno;
    free(buf);
    if (rc < 0) { errno = e; return -1; }
    return 0;
}

int dnfv_ipset_create(const char *name, const char *type, uint8_t revision, uint8_t family, uint32_t maxelem) {
    struct session s;
    if (open_session(&s) != 0) return -1;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = header(buf, &s, IPSET_CMD_CREATE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, family);
    mnl_attr_put_strz(nlh, IPSET_ATTR_SETNAME, name);
    mnl_attr_put_strz(nlh, IPSET_ATTR_TYPENAME, type);
    mnl_attr_put_u8(nlh, IPSET_ATTR_REVISION, revision);
    mnl_attr_put_u8(nlh, IPSET_ATTR_FAMILY, family);
    struct nlattr *data = mnl_attr_nest_start(nlh, IPSET_ATTR_DATA);
    if (maxelem) mnl_attr_put_u32(nlh, IPSET_ATTR_MAXELEM | NLA_F_NET_BYTEORDER, htonl(maxelem));
    mnl_attr_nest_end(nlh, data);
    int rc = transact(&s, nlh, NULL, NULL);
    int e = errno;
    close_session(&s);
    errno = e;
    return rc;
}

int dnfv_ipset_simple(int cmd, const char *name, const char *name2) {
    struct session s;
    if (open_session(&s) != 0) return -1;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = header(buf, &s, cmd, NLM_F_ACK, NFPROTO_UNSPEC);
    if (name) mnl_attr_put_strz(nlh, IPSET_ATTR_SETNAME, name);
    if (name2) mnl_attr_put_strz(nlh, IPSET_ATTR_SETNAME2, name2);
    int rc = transact(&s, nlh, NULL, NULL);
    int e = errno;
    close_session(&s);
    errno = e;
    return rc;
}

static void put_elem(struct nlmsghdr *nlh, uint8_t family, const struct dnfv_ipset_elem *elem) {
    struct nlattr *data = mnl_attr_nest_start(nlh, IPSET_ATTR_DATA);
    struct nlattr *ip = mnl_attr_nest_start(nlh, IPSET_ATTR_IP);
    if (family == NFPROTO_IPV6) mnl_attr_put(nlh, IPSET_ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER, 16, elem->addr);
    else mnl_attr_put(nlh, IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, 4, elem->addr);
    mnl_attr_nest_end(nlh, ip);
    if (elem->cidr) mnl_attr_put_u8(nlh, IPSET_ATTR_CIDR, elem->cidr);
    if (elem->proto) {
        mnl_attr_put_u16(nlh, IPSET_ATTR_PORT | NLA_F_NET_BYTEORDER, htons(elem->port));
        mnl_attr_put_u8(nlh, IPSET_ATTR_PROTO, elem->proto);
    }
    if (elem->has_mark) mnl_attr_put_u32(nlh, IPSET_ATTR_MARK | NLA_F_NET_BYTEORDER, htonl(elem->mark));
    mnl_attr_nest_end(nlh, data);
}

int dnfv_ipset_adt(int cmd, const char *name, uint8_t family, const struct dnfv_ipset_elem *elems, size_t count, int exist_ok) {
    struct session s;
    if (open_session(&s) != 0) return -1;
    char *buf = malloc(BUFFER_SIZE);
    if (!buf) { close_session(&s); errno = ENOMEM; return -1; }
    int rc = 0;
    size_t i = 0;
    // Elements per message: stay well inside the buffer (an IPv6 element with port is < 64 bytes).
    const size_t per_message = (BUFFER_SIZE - 256) / 64;
    // The kernel reads "an existing element is fine" from the header: NLM_F_EXCL asks for the error.
    const uint16_t excl = exist_ok ? 0 : NLM_F_EXCL;
    if (count == 1) {
        // One element goes as IPSET_ATTR_DATA, as the ipset tool sends it, so the kernel reports
        // its error (e.g. "already added") directly.
        struct nlmsghdr *nlh = header(buf, &s, cmd, NLM_F_ACK | excl, family);
        mnl_attr_put_strz(nlh, IPSET_ATTR_SETNAME, name);
        put_elem(nlh, family, &elems[0]);
        rc = transact(&s, nlh, NULL, NULL);
        i = 1;
    }
    while (i < count && rc == 0) {
        struct nlmsghdr *nlh = header(buf, &s, cmd, NLM_F_ACK | excl, family);
        mnl_attr_put_strz(nlh, IPSET_ATTR_SETNAME, name);
        // The kernel only accepts an element list (IPSET_ATTR_ADT) together with a line number,
        // which it echoes in errors; ours is the index of the batch's first element.
        mnl_attr_put_u32(nlh, IPSET_ATTR_LINENO | NLA_F_NET_BYTEORDER, htonl((uint32_t)i));
        struct nlattr *adt = mnl_attr_nest_start(nlh, IPSET_ATTR_ADT);
        size_t end = i + per_message < count ? i + per_message : count;
        for (; i < end; i++) put_elem(nlh, family, &elems[i]);
        mnl_attr_nest_end(nlh, adt);
        rc = transact(&s, nlh, NULL, NULL);
    }
    int e = errno;
    free(buf);
    close_session(&s);
    errno = e;
    return rc;
}

struct revisions { uint8_t min, max; int found; };

static int type_cb(const struct nlmsghdr *nlh, void *data) {
    struct revisions *r = data;
    const struct nlattr *attr;
    mnl_attr_for_each(attr, nlh, sizeof(struct nfgenmsg)) {
        switch (mnl_attr_get_type(attr)) {
        case IPSET_ATTR_REVISION: r->max = mnl_attr_get_u8(attr); r->found = 1; break;
        case IPSET_ATTR_REVISION_MIN: r->min = mnl_attr_get_u8(attr); break;
        }
    }
    return MNL_CB_OK;
}

int dnfv_ipset_type_revisions(const char *type, uint8_t family, uint8_t *min, uint8_t *max) {
    struct session s;
    if (open_session(&s) != 0) return -1;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = header(buf, &s, IPSET_CMD_TYPE, NLM_F_ACK, family); // the ACK ends the exchange
    mnl_attr_put_strz(nlh, IPSET_ATTR_TYPENAME, type);
    mnl_attr_put_u8(nlh, IPSET_ATTR_FAMILY, family);
    struct revisions r = {0, 0, 0};
    int rc = transact(&s, nlh, type_cb, &r);
    int e = errno;
    close_session(&s);
    if (rc != 0) { errno = e; return -1; }
    if (!r.found) { errno = ENOENT; return -1; }
    *min = r.min;
    *max = r.max;
    return 0;
}

struct listing {
    char *type; size_t type_len; uint8_t *family;
    struct dnfv_ipset_elem *elems; size_t capacity; long count;
    char *names; size_t names_len, names_used;
};

static void read_elem(const struct nlattr *data, struct dnfv_ipset_elem *elem) {
    const struct nlattr *attr;
    memset(elem, 0, sizeof(*elem));
    mnl_attr_for_each_nested(attr, data) {
        switch (mnl_attr_get_type(attr)) {
        case IPSET_ATTR_IP: {
            const struct nlattr *a;
            mnl_attr_for_each_nested(a, attr) {
                uint16_t len = mnl_attr_get_payload_len(a);
                memcpy(elem->addr, mnl_attr_get_payload(a), len > 16 ? 16 : len);
            }
            break;
        }
        case IPSET_ATTR_CIDR: elem->cidr = mnl_attr_get_u8(attr); break;
        case IPSET_ATTR_PORT: elem->port = ntohs(mnl_attr_get_u16(attr)); break;
        case IPSET_ATTR_PROTO: elem->proto = mnl_attr_get_u8(attr); break;
        case IPSET_ATTR_MARK: elem->mark = ntohl(mnl_attr_get_u32(attr)); elem->has_mark = 1; break;
        }
    }
}

static int list_cb(const struct nlmsghdr *nlh, void *data) {
    struct listing *l = data;
    const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
    const struct nlattr *attr;
    mnl_attr_for_each(attr, nlh, sizeof(*nfg)) {
        switch (mnl_attr_get_type(attr)) {
        case IPSET_ATTR_SETNAME:
            if (l->names) {
                const char *n = mnl_attr_get_str(attr);
                size_t len = strlen(n) + 1;
                // A dump repeats the set name in each message of a large set: keep it once.
                if (l->names_used >= len && strcmp(l->names + l->names_used - len, n) == 0) break;
                if (l->names_used + len <= l->names_len) { memcpy(l->names + l->names_used, n, len); l->names_used += len; l->count++; }
            }
            break;
        case IPSET_ATTR_TYPENAME:
            if (l->type) { strncpy(l->type, mnl_attr_get_str(attr), l->type_len - 1); l->type[l->type_len - 1] = 0; }
            break;
        case IPSET_ATTR_FAMILY:
            if (l->family) *l->family = mnl_attr_get_u8(attr);
            break;
        case IPSET_ATTR_ADT:
            if (l->elems || !l->names) {
                const struct nlattr *d;
                mnl_attr_for_each_nested(d, attr) {
                    if ((size_t)l->count < l->capacity) read_elem(d, &l->elems[l->count]);
                    l->count++;
                }
            }
            break;
        }
    }
    return MNL_CB_OK;
}

long dnfv_ipset_list(const char *name, char *type, size_t type_len, uint8_t *family,
                     struct dnfv_ipset_elem *elems, size_t capacity) {
    struct session s;
    if (open_session(&s) != 0) return -1;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = header(buf, &s, IPSET_CMD_LIST, NLM_F_DUMP, NFPROTO_UNSPEC);
    mnl_attr_put_strz(nlh, IPSET_ATTR_SETNAME, name);
    struct listing l = { type, type_len, family, elems, capacity, 0, NULL, 0, 0 };
    int rc = transact(&s, nlh, list_cb, &l);
    int e = errno;
    close_session(&s);
    if (rc != 0) { errno = e; return -1; }
    return l.count;
}

long dnfv_ipset_names(char *buf, size_t len) {
    struct session s;
    if (open_session(&s) != 0) return -1;
    char msg[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = header(msg, &s, IPSET_CMD_LIST, NLM_F_DUMP, NFPROTO_UNSPEC);
    struct listing l = { NULL, 0, NULL, NULL, 0, 0, buf, len, 0 };
    int rc = transact(&s, nlh, list_cb, &l);
    int e = errno;
    close_session(&s);
    if (rc != 0) { errno = e; return -1; }
    return l.count;
}

const char *dnfv_ipset_strerror(int code) {
    switch (code) {
    case IPSET_ERR_PROTOCOL: return "kernel and docknfv speak different ipset protocol versions";
    case IPSET_ERR_FIND_TYPE: return "the kernel does not support this set type or revision";
    case IPSET_ERR_MAX_SETS: return "the kernel's maximum number of sets is reached";
    case IPSET_ERR_BUSY: return "the set is in use by a rule and cannot be destroyed";
    case IPSET_ERR_EXIST_SETNAME2: return "a set with the second name already exists";
    case IPSET_ERR_TYPE_MISMATCH: return "the two sets are of different types";
    case IPSET_ERR_EXIST: return "the element or set already exists (or, on delete, is not in the set)";
    case IPSET_ERR_INVALID_CIDR: return "invalid prefix length for this set";
    case IPSET_ERR_INVALID_NETMASK: return "invalid netmask";
    case IPSET_ERR_INVALID_FAMILY: return "address family does not match the set";
    case IPSET_ERR_TIMEOUT: return "the set has no timeout support";
    case IPSET_ERR_REFERENCED: return "the set is referenced by a rule";
    case IPSET_ERR_IPADDR_IPV4: return "invalid IPv4 address";
    case IPSET_ERR_IPADDR_IPV6: return "invalid IPv6 address";
    // Hash-type codes (ip_set_hash.h is kernel-internal): IPSET_ERR_TYPE_SPECIFIC + n.
    case IPSET_ERR_TYPE_SPECIFIC: return "the set is full (maxelem reached)";
    case IPSET_ERR_TYPE_SPECIFIC + 1: return "the set cannot hold this element";
    case IPSET_ERR_TYPE_SPECIFIC + 2: return "invalid protocol for a port";
    case IPSET_ERR_TYPE_SPECIFIC + 3: return "a port needs a protocol";
    case ENOENT: return "the set does not exist";
    default: return strerror(code);
    }
}
