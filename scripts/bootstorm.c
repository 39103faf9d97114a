/* bootstorm: plays N servers booting into rescue over HTTP on loopback,
 * without QEMU, for scripts/bench-fleet (`make bench-fleet`).  Not a test.
 *
 * Server i is srv<i> with the MAC scripts/bench-fleet's config gives it
 * (52:54:ii:ii:ii:ii) and a source address of its own, 127.a.b.c (all of
 * 127/8 is loopback on Linux): a boot token is bound to the address that
 * fetched the kernel, so each server's requests leave from its address.
 *
 * It opens GET /v1/events (SSE, admin token), asks for every rescue at
 * once (POST /v1/servers/srv<i>/actions, as `rescuectl enter` does; at most
 * -c requests in flight overall), and each server whose transition to
 * rebooting shows on the stream "resets" (rescued runs with --sim-power):
 * it fetches its iPXE script, then the kernel, the initrd and the overlay
 * the script names, with its token, and phones home.  It ends when every
 * server reached rescue on the stream, or at the deadline (-d).
 *
 * Prints one line per figure, "key value", for the script to format:
 * per request kind the count, failures, p50 and p99 in ms; bytes; servers
 * in rescue; the time from the first request to the last rescue.  Exit 0
 * when every server reached rescue, 1 otherwise.
 *
 * bootstorm -g URL -n N: N clients download URL at once (one connection
 * each, from 127.0.0.1); prints the bytes, the wall time and the
 * aggregate MB/s (image serving, beside nginx).
 *
 * Single-threaded: libcurl's multi interface, curl_multi_poll. */
#include <curl/curl.h>
#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum kind { K_ENTER, K_SCRIPT, K_KERNEL, K_INITRD, K_OVERLAY, K_PHONE, K_N };
static const char *const kind_name[K_N] = {
    "enter", "ipxe_script", "kernel", "initrd", "overlay", "phone_home"};

struct server {
    int i;
    char id[32], mac[18], addr[20];
    char *kernel, *initrd, *overlay, *phone; /* URLs from its script */
    bool booting;                            /* reset, its boot not over yet */
    bool in_rescue, failed;
    int boots; /* resets seen: a step's timeout resets it again */
    double t_enter, t_rescue;
};

/* One transfer in flight. */
struct xfer {
    struct server *s; /* NULL: the event stream */
    enum kind kind;
    char *body;
    size_t len, cap;
    bool keep; /* keep the body (script, answers); else count it only */
    struct curl_slist *hdrs;
    char *post;
};

static const char *base_url, *admin_token;
static struct server *srvs;
static int nsrv, in_flight, max_flight = 256, nrescue, nfailed;
static double *lat[K_N];
static int nlat[K_N], nfail[K_N];
static uint64_t bytes[K_N];
static CURLM *multi;
/* Servers whose next step waits for a free slot: a FIFO per kind, the
 * later steps served first, so that a server that started booting keeps
 * going as a real one would, instead of every server fetching its script
 * before any fetches its kernel (which ran into the step deadlines). */
struct queue {
    struct server **v;
    size_t head, tail, cap;
};
static struct queue queues[K_N];
static char sse_line[8192];
static size_t sse_len;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        perror("bootstorm");
        exit(2);
    }
    return p;
}

static char *
xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        perror("bootstorm");
        exit(2);
    }
    return d;
}

static void
enqueue(struct server *s, enum kind k)
{
    struct queue *q = &queues[k];
    if (q->tail == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 1024;
        q->v = realloc(q->v, q->cap * sizeof(*q->v));
        if (!q->v) {
            perror("bootstorm");
            exit(2);
        }
    }
    q->v[q->tail++] = s;
}

/* The most advanced step waiting; false when none. */
static bool
dequeue(struct server **s, enum kind *k)
{
    for (int i = K_N - 1; i >= 0; i--)
        if (queues[i].head < queues[i].tail) {
            *s = queues[i].v[queues[i].head++];
            *k = (enum kind)i;
            return true;
        }
    return false;
}

static size_t
on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = sz * n;
    if (x->keep) {
        if (x->len + len + 1 > x->cap) {
            x->cap = 2 * (x->len + len + 1);
            x->body = realloc(x->body, x->cap);
            if (!x->body)
                return 0;
        }
        memcpy(x->body + x->len, p, len);
        x->len += len;
        x->body[x->len] = '\0';
    }
    return len;
}

static void
sse_event(const char *data)
{
    json_t *o = json_loads(data, 0, NULL);
    const char *id = json_string_value(json_object_get(o, "server"));
    const char *to = json_string_value(json_object_get(o, "to"));
    int i;
    if (id && to && sscanf(id, "srv%d", &i) == 1 && i >= 1 && i <= nsrv) {
        struct server *s = &srvs[i - 1];
        if (!strcmp(to, "rebooting") && !s->booting) {
            s->booting = true; /* the simulated reset: it boots now */
            s->boots++;
            enqueue(s, K_SCRIPT);
        } else if (!strcmp(to, "rescue") && !s->in_rescue) {
            s->in_rescue = true;
            s->t_rescue = now_s();
            nrescue++;
        } else if (!strcmp(to, "rescue_failed") && !s->failed) {
            s->failed = true;
            nfailed++;
        }
    }
    json_decref(o);
}

/* The stream's bytes: the "data:" line of each event. */
static size_t
on_sse(char *p, size_t sz, size_t n, void *arg)
{
    (void)arg;
    size_t len = sz * n;
    for (size_t k = 0; k < len; k++) {
        if (p[k] != '\n') {
            if (sse_len + 1 < sizeof(sse_line))
                sse_line[sse_len++] = p[k];
            continue;
        }
        sse_line[sse_len] = '\0';
        if (!strncmp(sse_line, "data: ", 6))
            sse_event(sse_line + 6);
        sse_len = 0;
    }
    return len;
}

static void
start(struct server *s, enum kind k, const char *url, const char *post)
{
    struct xfer *x = calloc(1, sizeof(*x));
    CURL *e = curl_easy_init();
    if (!x || !e) {
        perror("bootstorm");
        exit(2);
    }
    x->s = s;
    x->kind = k;
    x->keep = k == K_SCRIPT || k == K_ENTER || k == K_PHONE;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (k == K_ENTER) {
        char h[256];
        snprintf(h, sizeof(h), "Authorization: Bearer %s", admin_token);
        x->hdrs = curl_slist_append(x->hdrs, h);
    } else {
        /* The server speaks from its own address; a reset server opens
         * new connections, as iPXE and the rescue OS do. */
        char iface[32];
        snprintf(iface, sizeof(iface), "host!%s", s->addr);
        curl_easy_setopt(e, CURLOPT_INTERFACE, iface);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    if (post) {
        x->post = xstrdup(post);
        x->hdrs = curl_slist_append(x->hdrs, "Content-Type: application/json");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->post);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_multi_add_handle(multi, e);
    in_flight++;
}

/* The URL after "word " or "word=" up to a space, from the script. */
static char *
script_url(const char *text, const char *word)
{
    const char *p = strstr(text, word);
    if (!p)
        return NULL;
    p += strlen(word);
    if (strstr(word, "--name")) /* "--name NAME URL" */
        p = strchr(p + 1, ' ');
    while (p && *p == ' ')
        p++;
    if (!p || strncmp(p, "http", 4) != 0)
        return NULL;
    size_t n = strcspn(p, " \n");
    char *u = xmalloc(n + 1);
    memcpy(u, p, n);
    u[n] = '\0';
    return u;
}

static void
step(struct server *s, enum kind k)
{
    char url[512], body[256];
    switch (k) {
    case K_ENTER:
        snprintf(url, sizeof(url), "%s/v1/servers/%s/actions", base_url, s->id);
        s->t_enter = now_s();
        start(s, k, url, "{\"type\":\"rescue\"}");
        break;
    case K_SCRIPT:
        snprintf(url, sizeof(url), "%s/boot/%s.ipxe", base_url, s->mac);
        start(s, k, url, NULL);
        break;
    case K_KERNEL:
        start(s, k, s->kernel, NULL);
        break;
    case K_INITRD:
        start(s, k, s->initrd, NULL);
        break;
    case K_OVERLAY:
        start(s, k, s->overlay, NULL);
        break;
    case K_PHONE:
        snprintf(body, sizeof(body),
                 "{\"ip\":\"%s\",\"mac\":\"%s\",\"disks\":[{\"name\":"
                 "\"vda\"}]}",
                 s->addr, s->mac);
        start(s, k, s->phone, body);
        break;
    case K_N:
        break;
    }
}

/* A step failed: this boot is over (a retry's reset starts another);
 * the first few are told. */
static void
fail_server(struct server *s, enum kind k, const char *why)
{
    static int told;
    nfail[k]++;
    s->booting = false;
    if (k == K_ENTER && !s->failed) { /* no reset will come */
        s->failed = true;
        nfailed++;
    }
    if (told++ < 20)
        fprintf(stderr, "bootstorm: %s: %s: %s\n", s->id, kind_name[k], why);
}

static void
done(CURLMsg *m)
{
    CURL *e = m->easy_handle;
    struct xfer *x;
    long code = 0;
    curl_off_t t = 0, dl = 0;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &t);
    curl_easy_getinfo(e, CURLINFO_SIZE_DOWNLOAD_T, &dl);
    struct server *s = x->s;
    in_flight--;
    if (!s) {
        fprintf(stderr, "bootstorm: the event stream ended: %s\n",
                curl_easy_strerror(m->data.result));
    } else if (m->data.result != CURLE_OK || code / 100 != 2) {
        char why[160];
        snprintf(why, sizeof(why), "%s, HTTP %ld %.60s",
                 curl_easy_strerror(m->data.result), code,
                 x->body ? x->body : "");
        fail_server(s, x->kind, why);
    } else {
        lat[x->kind][nlat[x->kind]++] = t / 1000.0;
        bytes[x->kind] += (uint64_t)dl;
        if (x->kind == K_SCRIPT) {
            free(s->kernel);
            free(s->initrd);
            free(s->overlay);
            free(s->phone);
            s->kernel = script_url(x->body ? x->body : "", "kernel --name");
            s->initrd = script_url(x->body ? x->body : "", "initrd --name");
            s->overlay = script_url(x->body ? x->body : "", "apkovl=");
            s->phone = script_url(x->body ? x->body : "", "rescue_phone_home=");
            if (!s->kernel || !s->initrd || !s->overlay || !s->phone)
                fail_server(s, K_SCRIPT, "not a rescue script");
            else
                enqueue(s, K_KERNEL);
        } else if (x->kind == K_KERNEL) {
            enqueue(s, K_INITRD);
        } else if (x->kind == K_INITRD) {
            enqueue(s, K_OVERLAY);
        } else if (x->kind == K_OVERLAY) {
            enqueue(s, K_PHONE);
        } else if (x->kind == K_PHONE) {
            s->booting = false;
        }
    }
    curl_multi_remove_handle(multi, e);
    curl_easy_cleanup(e);
    curl_slist_free_all(x->hdrs);
    free(x->post);
    free(x->body);
    free(x);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
pct(double *v, int n, double p)
{
    if (!n)
        return 0;
    int k = (int)(p * (n - 1) + 0.5);
    return v[k];
}

/* -g: n downloads of url at once; the aggregate rate. */
static int
download(const char *url, int n)
{
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        struct xfer *x = calloc(1, sizeof(*x));
        CURL *e = curl_easy_init();
        if (!x || !e)
            return 2;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, x);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 512L * 1024);
        curl_multi_add_handle(multi, e);
    }
    int running = n, bad = 0;
    uint64_t total = 0;
    while (running) {
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            long code = 0;
            curl_off_t dl = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            curl_easy_getinfo(m->easy_handle, CURLINFO_SIZE_DOWNLOAD_T, &dl);
            if (m->data.result != CURLE_OK || code != 200)
                bad++;
            total += (uint64_t)dl;
        }
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double t = now_s() - t0;
    printf("clients %d\nfailed %d\nbytes %llu\nwall_s %.3f\nmb_s %.1f\n", n,
           bad, (unsigned long long)total, t, total / t / 1e6);
    return bad ? 1 : 0;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: bootstorm -u URL -t ADMIN_TOKEN -n N [-c IN_FLIGHT] "
            "[-d DEADLINE_S]\n"
            "       bootstorm -g URL -n N\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    int ch, deadline = 600;
    const char *get = NULL;
    while ((ch = getopt(argc, argv, "u:t:n:c:d:g:")) != -1) {
        switch (ch) {
        case 'g':
            get = optarg;
            break;
        case 'u':
            base_url = optarg;
            break;
        case 't':
            admin_token = optarg;
            break;
        case 'n':
            nsrv = atoi(optarg);
            break;
        case 'c':
            max_flight = atoi(optarg);
            break;
        case 'd':
            deadline = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (get && nsrv >= 1) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        multi = curl_multi_init();
        return download(get, nsrv);
    }
    if (!base_url || !admin_token || nsrv < 1 || nsrv > 250 * 250 * 250 ||
        max_flight < 1)
        usage();
    /* Every transfer in flight is a socket. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi = curl_multi_init();
    srvs = calloc((size_t)nsrv, sizeof(*srvs));
    for (int k = 0; k < K_N; k++)
        lat[k] = xmalloc((size_t)nsrv * sizeof(double));
    for (int i = 1; i <= nsrv; i++) {
        struct server *s = &srvs[i - 1];
        s->i = i;
        snprintf(s->id, sizeof(s->id), "srv%d", i);
        snprintf(s->mac, sizeof(s->mac), "52:54:%02x:%02x:%02x:%02x",
                 (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255);
        /* 127.1-250.1-250.1-250: no .0 or .255, never 127.0.0.1 */
        snprintf(s->addr, sizeof(s->addr), "127.%d.%d.%d", 1 + i / 62500,
                 1 + (i / 250) % 250, 1 + i % 250);
    }

    /* The stream first, so that no transition is missed. */
    char url[512], h[256];
    snprintf(url, sizeof(url), "%s/v1/events", base_url);
    snprintf(h, sizeof(h), "Authorization: Bearer %s", admin_token);
    struct curl_slist *sse_hdrs = curl_slist_append(NULL, h);
    sse_hdrs = curl_slist_append(sse_hdrs, "Accept: text/event-stream");
    struct xfer *sx = calloc(1, sizeof(*sx));
    CURL *se = curl_easy_init();
    curl_easy_setopt(se, CURLOPT_URL, url);
    curl_easy_setopt(se, CURLOPT_HTTPHEADER, sse_hdrs);
    curl_easy_setopt(se, CURLOPT_WRITEFUNCTION, on_sse);
    curl_easy_setopt(se, CURLOPT_PRIVATE, sx);
    curl_multi_add_handle(multi, se);
    int running;
    double t_open = now_s();
    /* Until the stream's comment line arrives: then it is subscribed. */
    while (now_s() - t_open < 30) {
        curl_multi_perform(multi, &running);
        long code = 0;
        curl_easy_getinfo(se, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200)
            break;
        curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    in_flight = 0; /* the stream takes no slot */

    double t0 = now_s();
    for (int i = 0; i < nsrv; i++)
        enqueue(&srvs[i], K_ENTER);
    while (nrescue + nfailed < nsrv && now_s() - t0 < deadline) {
        /* Boot steps first (the latest first): a server that reset is
         * never kept waiting behind the remaining entries. */
        struct server *s;
        enum kind k;
        while (in_flight < max_flight && dequeue(&s, &k))
            step(s, k);
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)))
            if (m->msg == CURLMSG_DONE) {
                if (m->easy_handle == se) {
                    fprintf(stderr, "bootstorm: the event stream ended\n");
                    goto out;
                }
                done(m);
            }
        curl_multi_poll(multi, NULL, 0, 50, NULL);
    }
out:;
    double t_end = now_s();
    double last = t0;
    for (int i = 0; i < nsrv; i++)
        if (srvs[i].in_rescue && srvs[i].t_rescue > last)
            last = srvs[i].t_rescue;
    double *boot = xmalloc((size_t)nsrv * sizeof(double));
    int nboot = 0;
    for (int i = 0; i < nsrv; i++)
        if (srvs[i].in_rescue)
            boot[nboot++] = (srvs[i].t_rescue - srvs[i].t_enter) * 1000;
    qsort(boot, (size_t)nboot, sizeof(double), cmp_double);
    int resets = 0;
    for (int i = 0; i < nsrv; i++)
        resets += srvs[i].boots;
    printf("servers %d\nin_rescue %d\nfailed %d\nresets %d\n", nsrv, nrescue,
           nsrv - nrescue, resets);
    printf("total_s %.3f\n", (nrescue ? last : t_end) - t0);
    printf("enter_to_rescue_ms %.1f %.1f\n", pct(boot, nboot, 0.5),
           pct(boot, nboot, 0.99));
    for (int k = 0; k < K_N; k++) {
        qsort(lat[k], (size_t)nlat[k], sizeof(double), cmp_double);
        printf("req %s %d %d %.2f %.2f %llu\n", kind_name[k], nlat[k], nfail[k],
               pct(lat[k], nlat[k], 0.5), pct(lat[k], nlat[k], 0.99),
               (unsigned long long)bytes[k]);
    }
    fflush(stdout);
    _exit(nrescue == nsrv ? 0 : 1); /* the OS frees the rest faster */
}
