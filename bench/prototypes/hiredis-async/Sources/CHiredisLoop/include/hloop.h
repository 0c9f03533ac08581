#ifndef HLOOP_H
#define HLOOP_H
#include <stddef.h>
#include <hiredis/hiredis.h>  /* the reader, for the minimal NIO handler (mode nio-minimal) */

/// One command handed to the loop thread. Owned by the caller, which keeps it (and argv) alive
/// until its reply callback has run. Linked intrusively into the loop's submission queue.
typedef struct hcall {
    void *owner;              /* caller's context (a Swift object), given back in the callback */
    int expect;               /* 1: status "OK" (SET); 2: integer (PUBLISH) */
    int result;               /* 0 when the reply matched `expect`, 1 otherwise (set by the loop) */
    int argc;
    const char **argv;
    const size_t *argvlen;
    struct hcall *next;
} hcall;

typedef void (*hloop_reply_fn)(hcall *call);

typedef struct hloop hloop;

/// Connects (non-blocking) and starts the loop thread. NULL on failure.
hloop *hloop_create(const char *ip, int port, hloop_reply_fn on_reply);
/// Thread-safe: queues `call`; wakes the loop (eventfd) only if it is asleep in epoll_wait.
void hloop_submit(hloop *loop, hcall *call);
/// Stops the thread, frees the connection.
void hloop_destroy(hloop *loop);
/// Counters kept by the loop thread (read after destroy, or racy while running).
typedef struct hloop_stats {
    unsigned long iterations, epoll_waits_blocking, wakeups_written, handle_read, handle_write_direct, handle_write_epoll, commands;
} hloop_stats;
hloop_stats hloop_get_stats(hloop *loop);

#endif
