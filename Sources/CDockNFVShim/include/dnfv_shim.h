// Small C helpers for what Swift cannot import directly: declarations hidden
// behind _GNU_SOURCE (setns, CLONE_NEWNET) and function-like ioctl macros.
#ifndef DOCKNFV_SHIM_H
#define DOCKNFV_SHIM_H

#include <stdint.h>
#include <sys/types.h>

/// setns(2) restricted to network namespaces. Returns 0 or -1 with errno set.
int dnfv_setns_net(int fd);

/// The namespace type of an nsfs file descriptor (NS_GET_NSTYPE ioctl).
/// Returns the CLONE_NEW* flag, or -1 with errno set (ENOTTY: not a namespace file).
int dnfv_ns_type(int fd);

/// CLONE_NEWNET, which glibc only declares under _GNU_SOURCE.
int dnfv_clone_newnet(void);

/* mallopt(M_ARENA_MAX, 1): <malloc.h> is not in Swift's Glibc module. */
int dnfv_malloc_one_arena(void);

/// gettid(2) — the calling thread's kernel id (used to name /proc/thread-self-like paths).
pid_t dnfv_gettid(void);

/// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to the caller
/// (so a supervisor that is not PID 1 can still reap them). Returns 0 or -1 with errno set.
int dnfv_set_child_subreaper(void);

/// Forks a detached process that keeps the descriptors it is not told to close: it forks again
/// (the caller reaps the first child, which exits at once), starts a new session, closes
/// `close_fds[0..<count]`, reads `wait_fd` until end of file, sleeps `linger_ns` nanoseconds and
/// exits. Everything after fork is async-signal-safe C: the caller may have other threads.
/// Returns the first child's pid (already reaped), or -1 with errno set when fork failed.
pid_t dnfv_spawn_lingering(const int *close_fds, size_t count, int wait_fd, long linger_ns);

#endif
