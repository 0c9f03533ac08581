#define _GNU_SOURCE
#include "hloop.h"
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>

struct hloop {
    redisAsyncContext *ac;
    int epfd, efd, fd;
    uint32_t want;        /* interest hiredis asked for (addRead/addWrite...) */
    uint32_t applied;     /* interest registered with epoll */
    int registered;
    pthread_mutex_t lock;
    hcall *head, *tail;   /* submission queue (under lock) */
    int sleeping;         /* loop is (about to be) in a blocking epoll_wait (under lock) */
    int stop;             /* under lock */
    pthread_t thread;
    hloop_reply_fn on_reply;
    hloop_stats stats;
};

/* ---- the adapter: hiredis asks for read/write interest; applied lazily before epoll_wait ---- */
static void ev_add_read(void *p)  { ((hloop *)p)->want |= EPOLLIN; }
static void ev_del_read(void *p)  { ((hloop *)p)->want &= ~EPOLLIN; }
static void ev_add_write(void *p) { ((hloop *)p)->want |= EPOLLOUT; }
static void ev_del_write(void *p) { ((hloop *)p)->want &= ~EPOLLOUT; }
static void ev_cleanup(void *p)   { hloop *l = p; l->want = 0; }

static void apply_interest(hloop *l) {
    if (l->fd < 0 || (l->registered && l->applied == l->want)) return;
    struct epoll_event ev = { .events = l->want, .data = { .u32 = 1 } };
    if (epoll_ctl(l->epfd, l->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, l->fd, &ev) != 0) {
        perror("epoll_ctl"); abort();
    }
    l->registered = 1;
    l->applied = l->want;
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv) {
    hloop *l = ac->data;
    hcall *c = priv;
    redisReply *reply = r;
    int ok = reply != NULL &&
        ((c->expect == 1 && reply->type == REDIS_REPLY_STATUS && reply->len == 2 && memcmp(reply->str, "OK", 2) == 0) ||
         (c->expect == 2 && reply->type == REDIS_REPLY_INTEGER));
    c->result = ok ? 0 : 1;
    l->on_reply(c);   /* resumes the waiting Swift task (it may reuse `c` at once) */
}

static void *loop_main(void *arg) {
    hloop *l = arg;
    struct epoll_event evs[8];
    for (;;) {
        /* Take everything queued; if nothing, announce we will sleep (submitters then signal). */
        pthread_mutex_lock(&l->lock);
        hcall *list = l->head;
        l->head = l->tail = NULL;
        int stop = l->stop;
        l->sleeping = (list == NULL);
        pthread_mutex_unlock(&l->lock);
        if (stop) break;
        while (list) {
            hcall *c = list;
            list = c->next;   /* read before handing over: the reply may come only later, but be safe */
            c->next = NULL;
            if (redisAsyncCommandArgv(l->ac, on_reply, c, c->argc, c->argv, c->argvlen) != REDIS_OK) {
                fprintf(stderr, "redisAsyncCommandArgv failed: %s\n", l->ac->errstr); abort();
            }
            l->stats.commands++;
        }
        /* Write at once (the socket is nearly always writable): EPOLLOUT only if it did not drain. */
        if ((l->want & EPOLLOUT) && (l->ac->c.flags & REDIS_CONNECTED)) { l->stats.handle_write_direct++; redisAsyncHandleWrite(l->ac); }
        apply_interest(l);
        int blocking = __atomic_load_n(&l->sleeping, __ATOMIC_RELAXED);
        if (blocking) l->stats.epoll_waits_blocking++;
        int n = epoll_wait(l->epfd, evs, 8, blocking ? -1 : 0);
        l->stats.iterations++;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == 0) {
                uint64_t v; (void)!read(l->efd, &v, sizeof v);
            } else {
                if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) { l->stats.handle_read++; redisAsyncHandleRead(l->ac); }
                if ((evs[i].events & EPOLLOUT) && l->ac) { l->stats.handle_write_epoll++; redisAsyncHandleWrite(l->ac); }
            }
        }
    }
    redisAsyncFree(l->ac);
    l->ac = NULL;
    return NULL;
}

hloop *hloop_create(const char *ip, int port, hloop_reply_fn fn) {
    hloop *l = calloc(1, sizeof *l);
    l->on_reply = fn;
    pthread_mutex_init(&l->lock, NULL);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data = { .u32 = 0 } };
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->efd, &ev);
    l->ac = redisAsyncConnect(ip, port);
    if (l->ac == NULL || l->ac->err) {
        fprintf(stderr, "redisAsyncConnect: %s\n", l->ac ? l->ac->errstr : "NULL");
        return NULL;
    }
    l->fd = l->ac->c.fd;
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    l->ac->data = l;
    l->ac->ev.data = l;
    l->ac->ev.addRead = ev_add_read;
    l->ac->ev.delRead = ev_del_read;
    l->ac->ev.addWrite = ev_add_write;
    l->ac->ev.delWrite = ev_del_write;
    l->ac->ev.cleanup = ev_cleanup;
    /* The non-blocking connect completes when the socket becomes writable. */
    l->want = EPOLLOUT;
    pthread_create(&l->thread, NULL, loop_main, l);
    return l;
}

void hloop_submit(hloop *l, hcall *c) {
    c->next = NULL;
    pthread_mutex_lock(&l->lock);
    if (l->tail) l->tail->next = c; else l->head = c;
    l->tail = c;
    int wake = l->sleeping;
    __atomic_store_n(&l->sleeping, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&l->lock);
    if (wake) {
        uint64_t one = 1;
        (void)!write(l->efd, &one, sizeof one);
        __atomic_add_fetch(&l->stats.wakeups_written, 1, __ATOMIC_RELAXED);
    }
}

void hloop_destroy(hloop *l) {
    pthread_mutex_lock(&l->lock);
    l->stop = 1;
    pthread_mutex_unlock(&l->lock);
    uint64_t one = 1;
    (void)!write(l->efd, &one, sizeof one);
    pthread_join(l->thread, NULL);
    close(l->efd);
    close(l->epfd);
}

hloop_stats hloop_get_stats(hloop *l) { return l->stats; }
