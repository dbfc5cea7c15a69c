/* The server's one string builder: JSON replies (json.c) and Twirp error
 * bodies (twirp.c) are written through it. */
#include "server/server_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void srv_strbuf_init(srv_strbuf_t *b) {
    memset(b, 0, sizeof *b);
    b->grows = 1;
}

void srv_strbuf_init_fixed(srv_strbuf_t *b, char *buf, size_t cap) {
    memset(b, 0, sizeof *b);
    b->p = buf;
    b->cap = cap;
    buf[0] = 0;
}

void srv_strbuf_put(srv_strbuf_t *b, const char *s, size_t n) {
    if (b->failed) return;
    if (n >= b->cap - b->len) { /* also true while a growing builder has no buffer */
        if (!b->grows) {
            b->failed = 1;
            return;
        }
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap - b->len <= n) {
            if (ncap > SIZE_MAX / 2) {
                b->failed = 1;
                return;
            }
            ncap *= 2;
        }
        char *g = realloc(b->p, ncap);
        if (!g) {
            b->failed = 1;
            return;
        }
        b->p = g;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void srv_strbuf_puts(srv_strbuf_t *b, const char *s) {
    srv_strbuf_put(b, s, strlen(s));
}
