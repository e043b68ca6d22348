#define _GNU_SOURCE
#include "dnfv_shim.h"

#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/nsfs.h>

int dnfv_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }

int dnfv_ns_type(int fd) { return ioctl(fd, NS_GET_NSTYPE); }

int dnfv_clone_newnet(void) { return CLONE_NEWNET; }

int dnfv_malloc_one_arena(void) { return mallopt(M_ARENA_MAX, 1); }

pid_t dnfv_gettid(void) { return (pid_t)syscall(SYS_gettid); }

int dnfv_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

pid_t dnfv_spawn_lingering(const int *close_fds, size_t count, int wait_fd, long linger_ns) {
    pid_t child = fork();
    if (child != 0) {
        if (child > 0) {
            int status;
            while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
        }
        return child;
    }
    // The first child: only async-signal-safe calls from here on.
    if (fork() != 0) _exit(0);
    setsid();
    for (size_t i = 0; i < count; i++) close(close_fds[i]);
    char byte;
    while (read(wait_fd, &byte, 1) < 0 && errno == EINTR) {}
    struct timespec wait = { .tv_sec = linger_ns / 1000000000L, .tv_nsec = linger_ns % 1000000000L }, rest;
    while (nanosleep(&wait, &rest) < 0 && errno == EINTR) wait = rest;
    _exit(0);
}
