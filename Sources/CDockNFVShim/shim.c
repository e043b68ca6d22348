#define _GNU_SOURCE
#include "dnfv_shim.h"

#include <errno.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/nsfs.h>

int dnfv_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }

int dnfv_ns_type(int fd) { return ioctl(fd, NS_GET_NSTYPE); }

int dnfv_clone_newnet(void) { return CLONE_NEWNET; }

pid_t dnfv_gettid(void) { return (pid_t)syscall(SYS_gettid); }

int dnfv_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
