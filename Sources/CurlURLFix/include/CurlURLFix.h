#ifndef CLAPPER_CURL_URL_FIX_H
#define CLAPPER_CURL_URL_FIX_H

#include <stdbool.h>

/// True when the process's calls to `curl_free` (FoundationNetworking's included) reach the
/// definition in this module: the executable exports it (`--export-dynamic-symbol`).
bool clapper_curl_url_fix_active(void);

/// URL handles given to `curl_free` and released whole (`curl_url_cleanup`) so far.
unsigned long clapper_curl_url_fix_released(void);

/// Does what FoundationNetworking does for every request (`CFURLSessionCurlHostIsEqual`: a URL
/// handle parsed, its host read, both given to `curl_free`) `iterations` times, and returns how
/// many heap bytes more are in use afterwards. `through_fix` false calls libcurl's own
/// `curl_free`, as the process would without this module, in a forked child (so that other
/// threads' allocations do not move the figure); -1 when the probe could not run.
long clapper_curl_url_leak_probe(int iterations, bool through_fix);

#endif
