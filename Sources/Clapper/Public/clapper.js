// clapper.js: follow a Clapper job, or all of a user's jobs, from a browser. No build step, no
// dependencies. Served by Clapper at /clapper.js.
//
//   const stream = Clapper.follow({
//     eventsUrl,                        // an eventsUrl from the API (job) or POST /v1/events/token (user)
//     renew: async () => newEventsUrl,  // called when the token expires (or the URL is refused)
//     onChange: (view) => {},           // every version of every job, oldest first
//     onDone: (info) => {},             // a job's stream finished ({jobId, status})
//     onStatus: (state) => {},          // "open" | "reconnecting" | "renewing" | "closed"
//   });
//   for await (const view of stream) { … }   // the same changes, as an async iterator
//   stream.close();
//
// It resumes after the last event id it saw (lastEventId in the URL: EventSource cannot send
// headers on its own reconnects), renews its token when the stream says `token-expired`, and
// backs off (0.5 s doubling to 30 s, with jitter) while the server cannot be reached.
(function (global) {
  "use strict";

  function withLastEventId(url, id) {
    if (!id) return url;
    const parsed = new URL(url, global.location ? global.location.href : undefined);
    parsed.searchParams.set("lastEventId", id);
    return parsed.toString();
  }

  class ClapperStream {
    constructor(options) {
      if (!options || !options.eventsUrl) throw new Error("Clapper.follow needs an eventsUrl");
      this.url = options.eventsUrl;
      this.renew = options.renew || null;
      this.onChange = options.onChange || (() => {});
      this.onDone = options.onDone || (() => {});
      this.onStatus = options.onStatus || (() => {});
      this.lastEventId = options.lastEventId || null;
      this.closed = false;
      this.failures = 0;
      this.opens = 0;
      this.renewals = 0;
      this.source = null;
      this.timer = null;
      this.waiting = [];   // async iterator: pending resolvers
      this.queued = [];    // async iterator: views not taken yet
      this.open();
    }

    open() {
      if (this.closed) return;
      this.opens += 1;
      const source = new EventSource(withLastEventId(this.url, this.lastEventId));
      this.source = source;
      let opened = false;
      source.onopen = () => { opened = true; this.failures = 0; this.onStatus("open"); };
      const take = (event) => {
        if (event.lastEventId) this.lastEventId = event.lastEventId;
        let view;
        try { view = JSON.parse(event.data); } catch (_) { return; }
        this.emit(view);
      };
      source.addEventListener("snapshot", take);
      source.addEventListener("job", take);
      source.addEventListener("done", (event) => {
        let info = {};
        try { info = JSON.parse(event.data); } catch (_) { /* keep {} */ }
        this.onDone(info);
      });
      source.addEventListener("token-expired", () => this.renewAndReopen());
      source.onerror = () => {
        // EventSource reconnects by itself while readyState is CONNECTING; a refused stream (a
        // 401 for an expired token, a 4xx) closes it for good: renew or back off ourselves.
        if (source.readyState !== EventSource.CLOSED || this.closed || this.source !== source) return;
        if (!opened && this.renew) return this.renewAndReopen();
        this.reconnectLater();
      };
    }

    emit(view) {
      this.onChange(view);
      const resolve = this.waiting.shift();
      if (resolve) resolve({ value: view, done: false });
      else this.queued.push(view);
    }

    stop() {
      if (this.source) { this.source.close(); this.source = null; }
      if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    }

    reconnectLater() {
      this.stop();
      if (this.closed) return;
      this.failures += 1;
      const base = Math.min(30000, 500 * Math.pow(2, this.failures - 1));
      this.onStatus("reconnecting");
      this.timer = setTimeout(() => this.open(), base * (0.8 + Math.random() * 0.4));
    }

    async renewAndReopen() {
      this.stop();
      if (this.closed) return;
      if (!this.renew) return this.reconnectLater();
      this.onStatus("renewing");
      try {
        this.url = await this.renew();
        this.renewals += 1;
        this.open();
      } catch (_) {
        this.reconnectLater();
      }
    }

    close() {
      this.closed = true;
      this.stop();
      this.onStatus("closed");
      for (const resolve of this.waiting.splice(0)) resolve({ value: undefined, done: true });
    }

    [Symbol.asyncIterator]() {
      return {
        next: () => {
          if (this.queued.length) return Promise.resolve({ value: this.queued.shift(), done: false });
          if (this.closed) return Promise.resolve({ value: undefined, done: true });
          return new Promise((resolve) => this.waiting.push(resolve));
        },
        return: () => { this.close(); return Promise.resolve({ value: undefined, done: true }); },
      };
    }
  }

  /// A `renew` for the user's all-jobs stream: POST /v1/events/token with the caller's bearer token.
  function userTokenRenewer(baseUrl, bearer) {
    return async () => {
      const response = await fetch(new URL("/v1/events/token", baseUrl || global.location.href), {
        method: "POST",
        headers: bearer ? { Authorization: "Bearer " + bearer } : {},
      });
      if (!response.ok) throw new Error("token renewal failed: " + response.status);
      return (await response.json()).eventsUrl;
    };
  }

  global.Clapper = { follow: (options) => new ClapperStream(options), userTokenRenewer, ClapperStream };
})(typeof window !== "undefined" ? window : globalThis);
