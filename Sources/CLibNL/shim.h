#ifndef DOCKNFV_CLIBNL_H
#define DOCKNFV_CLIBNL_H
#include <netinet/in.h>
#include <netlink/netlink.h>
#include <netlink/errno.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/route/link.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#endif
