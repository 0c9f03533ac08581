// Works around a memory leak in swift-corelibs-foundation's URLSession on Linux.
//
// FoundationNetworking calls CFURLSessionCurlHostIsEqual for every request it starts
// (_EasyHandle.set(url:)). That function parses the URL into a libcurl URL handle (curl_url,
// curl_url_set) and then releases the handle with curl_free, which frees only the handle's own
// struct: the scheme, host, path, query and the other parts libcurl allocated for it stay on the
// heap (curl_url_cleanup frees them). heaptrack measured about 180 bytes per request in Clapper's
// soak (0.08-0.1 MB a minute per instance at 3 jobs/s), never given back.
//
// The executables export curl_url, curl_url_cleanup and curl_free from this file
// (--export-dynamic-symbol), so the dynamic linker binds FoundationNetworking's calls to them.
// curl_url remembers, per thread, the handle it made last; curl_free of exactly that pointer
// calls libcurl's curl_url_cleanup instead (which frees the handle and its parts); every other
// pointer goes to libcurl's curl_free unchanged. libcurl's functions are found with
// dlsym(RTLD_NEXT).
#define _GNU_SOURCE
#include "CurlURLFix.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <malloc.h>
#include <errno.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

typedef CURLU *(*curl_url_function)(void);
typedef void (*curl_url_cleanup_function)(CURLU *);
typedef void (*curl_free_function)(void *);

// Looked up once; a race looks up the same address twice, harmlessly.
static void *next_symbol(void **slot, const char *name) {
    void *found = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (found == NULL) {
        found = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, found, __ATOMIC_RELEASE);
    }
    return found;
}

static void *next_curl_url;
static void *next_curl_url_cleanup;
static void *next_curl_free;

// The URL handle this thread made last and has not released.
static __thread CURLU *last_url;
static unsigned long released_whole;

CURLU *curl_url(void) {
    curl_url_function make = (curl_url_function)next_symbol(&next_curl_url, "curl_url");
    CURLU *handle = make ? make() : NULL;
    last_url = handle;
    return handle;
}

void curl_url_cleanup(CURLU *handle) {
    if (handle != NULL && handle == last_url) last_url = NULL;
    curl_url_cleanup_function cleanup = (curl_url_cleanup_function)next_symbol(&next_curl_url_cleanup, "curl_url_cleanup");
    if (cleanup) cleanup(handle);
}

void curl_free(void *pointer) {
    if (pointer != NULL && pointer == last_url) {
        // A URL handle given to curl_free: release it whole.
        curl_url_cleanup((CURLU *)pointer);
        __atomic_fetch_add(&released_whole, 1, __ATOMIC_RELAXED);
        return;
    }
    curl_free_function release = (curl_free_function)next_symbol(&next_curl_free, "curl_free");
    if (release) release(pointer);
}

unsigned long clapper_curl_url_fix_released(void) {
    return __atomic_load_n(&released_whole, __ATOMIC_RELAXED);
}

bool clapper_curl_url_fix_active(void) {
    return dlsym(RTLD_DEFAULT, "curl_free") == (void *)curl_free;
}

static long leak_probe_loop(int iterations, bool through_fix, curl_free_function libcurl_free) {
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < iterations; i++) {
        CURLU *handle = curl_url();
        if (handle == NULL) return -1;
        if (curl_url_set(handle, CURLUPART_URL, "http://127.0.0.1:8080/fal-ai/some-model/requests/0b9b5c4e?query=1", 0) == CURLUE_OK) {
            char *host = NULL;
            if (curl_url_get(handle, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
                if (through_fix) curl_free(host); else libcurl_free(host);
            }
        }
        if (through_fix) curl_free(handle); else libcurl_free(handle);
    }
    if (!through_fix) last_url = NULL;
    struct mallinfo2 after = mallinfo2();
    return (long)after.uordblks - (long)before.uordblks;
}

long clapper_curl_url_leak_probe(int iterations, bool through_fix) {
    curl_free_function libcurl_free = (curl_free_function)next_symbol(&next_curl_free, "curl_free");
    if (libcurl_free == NULL) return -1;
    if (through_fix) return leak_probe_loop(iterations, true, libcurl_free);
    // libcurl's own curl_free runs in a forked child: mallinfo2 counts every thread's heap, and in
    // a test process other tests' threads free megabytes meanwhile (one run measured -90 KB for a
    // 4 MB leak). The child has one thread; glibc makes malloc usable after fork.
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t child = fork();
    if (child < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (child == 0) {
        close(fds[0]);
        long leaked = leak_probe_loop(iterations, false, libcurl_free);
        ssize_t written = write(fds[1], &leaked, sizeof leaked);
        _exit(written == (ssize_t)sizeof leaked ? 0 : 1);
    }
    close(fds[1]);
    long leaked = -1;
    size_t got = 0;
    while (got < sizeof leaked) {
        ssize_t n = read(fds[0], (char *)&leaked + got, sizeof leaked - got);
        if (n > 0) got += (size_t)n;
        else if (n < 0 && errno == EINTR) continue;
        else break;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    return got == sizeof leaked ? leaked : -1;
}
