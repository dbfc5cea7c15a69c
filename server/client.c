/* A tiny blocking HTTP/1.1 client for Twirp calls (one request per
 * connection, "Connection: close"), and Search on top of it. */
#include "server/server.h"
#include "server/server_internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CLIENT_MAX_RESPONSE ((size_t)256 << 20)

typedef struct url {
    char host[256], port[16], prefix[512];
} url_t;

static int parse_url(const char *s, url_t *u, util_err_t *err) {
    memset(u, 0, sizeof *u);
    if (strncmp(s, "http://", 7) != 0)
        return util_fail(err, "server url '%s' does not start with http://", s);
    s += 7;
    size_t hl;
    const char *after;
    if (*s == '[') { /* [v6 address] */
        const char *close = strchr(s, ']');
        if (!close) return util_fail(err, "server url: unclosed '['");
        hl = (size_t)(close - s - 1);
        if (hl >= sizeof u->host) return util_fail(err, "server url: host too long");
        memcpy(u->host, s + 1, hl);
        after = close + 1;
    } else {
        hl = strcspn(s, ":/");
        if (hl == 0 || hl >= sizeof u->host) return util_fail(err, "server url: bad host");
        memcpy(u->host, s, hl);
        after = s + hl;
    }
    snprintf(u->port, sizeof u->port, "80");
    if (*after == ':') {
        size_t pl = strcspn(after + 1, "/");
        if (pl == 0 || pl >= sizeof u->port) return util_fail(err, "server url: bad port");
        memcpy(u->port, after + 1, pl);
        u->port[pl] = 0;
        after += 1 + pl;
    }
    snprintf(u->prefix, sizeof u->prefix, "%s", after);
    size_t n = strlen(u->prefix);
    while (n > 0 && u->prefix[n - 1] == '/')
        u->prefix[--n] = 0;
    return 0;
}

static int send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int srv_client_call(const char *url, const char *method, const char *token, const uint8_t *body,
                    size_t len, double timeout_s, int *status, uint8_t **resp, size_t *resp_len,
                    util_err_t *err) {
    *resp = NULL;
    *resp_len = 0;
    *status = 0;
    url_t u;
    if (parse_url(url, &u, err)) return -1;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(u.host, u.port, &hints, &ai);
    if (gai) return util_fail(err, "%s: %s", u.host, gai_strerror(gai));
    int fd = -1;
    struct timeval tv = {(time_t)timeout_s,
                         (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* also bounds connect */
        if (connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return util_fail(err, "cannot connect to %s:%s: %s", u.host, u.port, strerror(errno));
    char head[2048];
    int hn = snprintf(head, sizeof head,
                      "POST %s" SRV_TWIRP_PREFIX "%s HTTP/1.1\r\nHost: %s:%s\r\n"
                      "Content-Type: application/protobuf\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n%s%s%s\r\n",
                      u.prefix, method, u.host, u.port, len, token ? "Authorization: Bearer " : "",
                      token ? token : "", token ? "\r\n" : "");
    if (hn < 0 || (size_t)hn >= sizeof head) {
        close(fd);
        return util_fail(err, "request header too long");
    }
    if (send_all(fd, head, (size_t)hn) || (len && send_all(fd, body, len))) {
        int e = errno;
        close(fd);
        return util_fail(err, "sending to %s:%s: %s", u.host, u.port, strerror(e));
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    int rc = buf ? 0 : util_fail(err, "out of memory");
    while (rc == 0) {
        if (n == cap) {
            if (cap >= CLIENT_MAX_RESPONSE) {
                rc = util_fail(err, "response larger than %zu bytes", CLIENT_MAX_RESPONSE);
                break;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                rc = util_fail(err, "out of memory");
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            rc = util_fail(err, "reading from %s:%s: %s", u.host, u.port,
                           errno == EAGAIN ? "timed out" : strerror(errno));
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (rc) {
        free(buf);
        return -1;
    }
    buf[n] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    int st = 0;
    if (!end || sscanf(buf, "HTTP/1.%*d %d", &st) != 1) {
        free(buf);
        return util_fail(err, "%s:%s: not an HTTP response", u.host, u.port);
    }
    size_t body_off = (size_t)(end + 4 - buf), blen = n - body_off;
    /* Content-Length, when present, bounds the body. */
    *end = 0;
    for (char *line = strstr(buf, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        if (!strncasecmp(line + 2, "Content-Length:", 15)) {
            unsigned long long cl = strtoull(line + 17, NULL, 10);
            if (cl < blen) blen = (size_t)cl;
        }
    }
    *resp = malloc(blen + 1);
    if (!*resp) {
        free(buf);
        return util_fail(err, "out of memory");
    }
    memcpy(*resp, buf + body_off, blen);
    (*resp)[blen] = 0;
    *resp_len = blen;
    *status = st;
    free(buf);
    return 0;
}

int srv_client_search(const char *url, const char *token, const srv_client_search_t *q,
                      double timeout_s, srv_client_hit_t *hits, int *n_hits, int *status,
                      util_err_t *err) {
    *n_hits = 0;
    Imgret__V1__SearchRequest r = IMGRET__V1__SEARCH_REQUEST__INIT;
    Imgret__V1__Vector v = IMGRET__V1__VECTOR__INIT;
    if (q->image) {
        r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_IMAGE;
        r.image.data = (uint8_t *)q->image;
        r.image.len = q->image_len;
    } else if (q->vector) {
        v.n_values = (size_t)q->dim;
        v.values = (float *)q->vector;
        r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_VECTOR;
        r.vector = &v;
    } else {
        r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_ITEM_ID;
        r.item_id = q->item_id;
    }
    r.k = (uint32_t)(q->k > 0 ? q->k : SRV_DEFAULT_K);
    r.metric = q->hamming ? IMGRET__V1__METRIC__HAMMING : IMGRET__V1__METRIC__EUCLIDEAN;
    r.rerank = q->rerank != 0;
    size_t len = imgret__v1__search_request__get_packed_size(&r);
    uint8_t *body = malloc(len ? len : 1);
    if (!body) return util_fail(err, "out of memory");
    imgret__v1__search_request__pack(&r, body);
    int st = 0;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = srv_client_call(url, "Search", token, body, len, timeout_s, &st, &resp, &rlen, err);
    free(body);
    if (status) *status = st;
    if (rc) return -1;
    if (st != 200) {
        /* A Twirp error: {"code":"...","msg":"..."}; pass it on as it is. */
        util_fail(err, "HTTP %d: %.400s", st, (const char *)resp);
        free(resp);
        return -1;
    }
    Imgret__V1__SearchResponse *sr = imgret__v1__search_response__unpack(NULL, rlen, resp);
    free(resp);
    if (!sr) return util_fail(err, "the server's reply is not a SearchResponse");
    int want = (int)r.k;
    for (size_t i = 0; i < sr->n_hits && (int)i < want; i++) {
        srv_client_hit_t *h = &hits[i];
        memset(h, 0, sizeof *h);
        h->id = sr->hits[i]->id;
        h->distance = sr->hits[i]->distance;
        h->label = sr->hits[i]->label;
        snprintf(h->label_name, sizeof h->label_name, "%s", sr->hits[i]->label_name);
        snprintf(h->uri, sizeof h->uri, "%s", sr->hits[i]->uri);
        (*n_hits)++;
    }
    imgret__v1__search_response__free_unpacked(sr, NULL);
    return 0;
}
