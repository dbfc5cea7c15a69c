/* The proto3 JSON mapping for protobuf-c messages (see json.h for the
 * rules). The reader is a strict recursive-descent JSON parser that decodes
 * straight into the message struct as it goes, guided by the descriptors:
 * no document tree, so memory follows the decoded message and not the
 * number of tokens in the body. Everything it allocates is reachable from
 * the message at every step (array counts are raised only once an element
 * is whole, sub-messages are linked before they are filled), so a failure
 * anywhere is cleaned up by protobuf_c_message_free_unpacked. */
#include "server/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define JSON_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define JSON_PRINTF(a, b)
#endif

void srv_json_limits_default(srv_json_limits_t *lim, size_t body_len) {
    lim->max_depth = SRV_JSON_MAX_DEPTH;
    const size_t base = (size_t)1 << 20;
    lim->max_bytes = body_len > (SIZE_MAX - base) / 8 ? SIZE_MAX : 8 * body_len + base;
}

/* ------------------------------------------------------------- reading */

typedef struct jdec {
    const char *start, *p, *end;
    const char *type_name; /* the top-level message, for error sentences */
    int depth, max_depth;
    size_t used, max_bytes;
    char path[200]; /* the field being read: items[2].vector.values[7] */
    size_t path_len;
    char what[40]; /* scratch for next_what */
    int failed;
    srv_error_t *e;
} jdec_t;

static int jfail(jdec_t *d, const char *fmt, ...) JSON_PRINTF(2, 3);

static int jfail(jdec_t *d, const char *fmt, ...) {
    if (d->failed) return -1;
    d->failed = 1;
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    size_t off = (size_t)(d->p - d->start);
    if (d->path_len)
        srv_fail(d->e, SRV_MALFORMED, "%s JSON, offset %zu, field %s: %s", d->type_name, off,
                 d->path, why);
    else
        srv_fail(d->e, SRV_MALFORMED, "%s JSON, offset %zu: %s", d->type_name, off, why);
    return -1;
}

static int joom(jdec_t *d) {
    if (d->failed) return -1;
    d->failed = 1;
    return srv_fail(d->e, SRV_RESOURCE_EXHAUSTED, "out of memory decoding the JSON body");
}

/* Counts n bytes against the message's budget. */
static int charge(jdec_t *d, size_t n) {
    if (n > d->max_bytes - d->used)
        return jfail(d, "the decoded message would take more than %zu bytes", d->max_bytes);
    d->used += n;
    return 0;
}

static size_t path_push(jdec_t *d, const char *fmt, ...) JSON_PRINTF(2, 3);

/* Appends a segment to the field path; returns the length to restore. A
 * path too long for the buffer ends in "...". */
static size_t path_push(jdec_t *d, const char *fmt, ...) {
    size_t saved = d->path_len, room = sizeof d->path - d->path_len;
    if (room > 4) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(d->path + d->path_len, room, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= room - 3) {
            memcpy(d->path + sizeof d->path - 4, "...", 4);
            d->path_len = sizeof d->path - 1;
        } else {
            d->path_len += (size_t)n;
        }
    }
    return saved;
}

static void path_pop(jdec_t *d, size_t saved) {
    d->path_len = saved;
    d->path[saved] = 0;
}

static int at_end(const jdec_t *d) {
    return d->p >= d->end;
}

static char peek(const jdec_t *d) {
    return d->p < d->end ? *d->p : 0;
}

static void ws(jdec_t *d) {
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

static int ident_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* What comes next, in words, for "expected X, found Y". */
static const char *next_what(jdec_t *d) {
    if (at_end(d)) return "the end of the body";
    unsigned char c = (unsigned char)*d->p;
    switch (c) {
    case '{':
        return "an object";
    case '[':
        return "an array";
    case '"':
        return "a string";
    default:
        break;
    }
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(d->end - d->p) >= n && !memcmp(d->p, words[i], n) &&
            (d->p + n == d->end || !ident_char(d->p[n])))
            return i < 2 ? "a boolean" : "null";
    }
    if (c == '-' || (c >= '0' && c <= '9')) return "a number";
    if (c >= 0x21 && c < 0x7f)
        snprintf(d->what, sizeof d->what, "the character '%c'", c);
    else
        snprintf(d->what, sizeof d->what, "the byte 0x%02x", c);
    return d->what;
}

/* Consumes the literal word (true, false, null) if it is next. */
static int take_literal(jdec_t *d, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) return 0;
    if (d->p + n < d->end && ident_char(d->p[n])) return 0;
    d->p += n;
    return 1;
}

static int enter(jdec_t *d) {
    if (++d->depth > d->max_depth)
        return jfail(d, "objects and arrays nested deeper than %d", d->max_depth);
    return 0;
}

/* Length of the JSON number at s (n bytes available) by the RFC 8259
 * grammar -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, or 0. */
static size_t number_len(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n) return 0;
    if (s[i] == '0')
        i++;
    else if (s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return 0;
    if (i < n && s[i] == '.') {
        size_t j = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j) return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t j = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j) return 0;
    }
    return i;
}

/* The bare number token at d->p: its text (not NUL-terminated). */
static int number_token(jdec_t *d, const char **s, size_t *n) {
    size_t len = number_len(d->p, (size_t)(d->end - d->p));
    if (len == 0 || (d->p + len < d->end && (ident_char(d->p[len]) || d->p[len] == '.' ||
                                             d->p[len] == '+' || d->p[len] == '-')))
        return jfail(d, "malformed number");
    *s = d->p;
    *n = len;
    d->p += len;
    return 0;
}

static int hex4(const char *s, const char *end, unsigned *out) {
    if (end - s < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        unsigned h;
        if (c >= '0' && c <= '9')
            h = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            h = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            h = (unsigned)(c - 'A' + 10);
        else
            return -1;
        v = v << 4 | h;
    }
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n > 0 bytes available), or 0
 * (overlong forms, surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len) return 0;
    unsigned cp = c & (0xFF >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static size_t utf8_put(unsigned cp, char *u) {
    if (cp < 0x80) {
        u[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (char)(0xF0 | cp >> 18);
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads the JSON string at d->p (a '"'): checks escapes, surrogate pairs,
 * control characters and UTF-8, and writes the unescaped bytes into out
 * (when not NULL; at most cap bytes). *len is the unescaped length. */
static int jstring(jdec_t *d, char *out, size_t cap, size_t *len) {
    const char *q = d->p + 1;
    size_t n = 0;
    *len = 0;
    for (;;) {
        if (q >= d->end) {
            d->p = q;
            return jfail(d, "unterminated string");
        }
        unsigned char c = (unsigned char)*q;
        char u[4];
        size_t ul;
        const char *src = u;
        if (c == '"') {
            q++;
            break;
        } else if (c < 0x20) {
            d->p = q;
            return jfail(d, "control character 0x%02x in a string (write it as \\u%04x)", c, c);
        } else if (c == '\\') {
            if (q + 1 >= d->end) {
                d->p = q;
                return jfail(d, "unterminated string");
            }
            unsigned cp;
            ul = 1;
            switch (q[1]) {
            case '"':
                u[0] = '"';
                break;
            case '\\':
                u[0] = '\\';
                break;
            case '/':
                u[0] = '/';
                break;
            case 'b':
                u[0] = '\b';
                break;
            case 'f':
                u[0] = '\f';
                break;
            case 'n':
                u[0] = '\n';
                break;
            case 'r':
                u[0] = '\r';
                break;
            case 't':
                u[0] = '\t';
                break;
            case 'u':
                if (hex4(q + 2, d->end, &cp)) {
                    d->p = q;
                    return jfail(d, "\\u must be followed by four hex digits");
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (d->end - q >= 12 && q[6] == '\\' && q[7] == 'u' &&
                        !hex4(q + 8, d->end, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        q += 6;
                    } else {
                        d->p = q;
                        return jfail(d, "\\u%04x is a UTF-16 high surrogate without its low half",
                                     cp);
                    }
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    d->p = q;
                    return jfail(d, "\\u%04x is a lone UTF-16 low surrogate", cp);
                }
                ul = utf8_put(cp, u);
                q += 4;
                break;
            default:
                d->p = q;
                if (q[1] >= 0x21 && q[1] < 0x7f) return jfail(d, "unknown escape \\%c", q[1]);
                return jfail(d, "unknown escape: a backslash before the byte 0x%02x",
                             (unsigned char)q[1]);
            }
            q += 2;
        } else if (c < 0x80) {
            src = (const char *)q;
            ul = 1;
            q++;
        } else {
            ul = utf8_len((const unsigned char *)q, (size_t)(d->end - q));
            if (!ul) {
                d->p = q;
                return jfail(d, "invalid UTF-8 in a string");
            }
            src = q;
            q += ul;
        }
        if (out && n + ul <= cap) memcpy(out + n, src, ul);
        n += ul;
    }
    d->p = q;
    *len = n;
    return 0;
}

/* The JSON string at d->p, unescaped into a malloc'd NUL-terminated buffer.
 * counted: the bytes count against the message's budget (they stay in it). */
static int jstring_alloc(jdec_t *d, int counted, char **out, size_t *len) {
    const char *at = d->p;
    size_t n;
    *out = NULL;
    *len = 0;
    if (jstring(d, NULL, 0, &n)) return -1;
    if (counted && charge(d, n + 1)) return -1;
    char *s = malloc(n + 1);
    if (!s) return joom(d);
    d->p = at;
    jstring(d, s, n, &n);
    s[n] = 0;
    *out = s;
    *len = n;
    return 0;
}

static int skip_value(jdec_t *d);

static int skip_container(jdec_t *d, char close) {
    if (enter(d)) return -1;
    d->p++;
    ws(d);
    if (peek(d) == close) {
        d->p++;
        d->depth--;
        return 0;
    }
    for (;;) {
        ws(d);
        if (close == '}') {
            size_t n;
            if (peek(d) != '"') return jfail(d, "expected a field name, found %s", next_what(d));
            if (jstring(d, NULL, 0, &n)) return -1;
            ws(d);
            if (peek(d) != ':') return jfail(d, "expected ':' after a field name");
            d->p++;
            ws(d);
        }
        if (skip_value(d)) return -1;
        ws(d);
        if (peek(d) == ',') {
            d->p++;
            continue;
        }
        if (peek(d) == close) {
            d->p++;
            d->depth--;
            return 0;
        }
        return jfail(d, "expected ',' or '%c', found %s", close, next_what(d));
    }
}

/* Checks and passes over one JSON value (an unknown field's). */
static int skip_value(jdec_t *d) {
    const char *s;
    size_t n;
    switch (peek(d)) {
    case '{':
        return skip_container(d, '}');
    case '[':
        return skip_container(d, ']');
    case '"':
        return jstring(d, NULL, 0, &n);
    default:
        break;
    }
    if (take_literal(d, "true") || take_literal(d, "false") || take_literal(d, "null")) return 0;
    if (peek(d) == '-' || (peek(d) >= '0' && peek(d) <= '9')) return number_token(d, &s, &n);
    return jfail(d, "expected a value, found %s", next_what(d));
}

/* ----------------------------------------------------- scalars from JSON */

/* The whole number a JSON number's text stands for (1e3 and 7.0 are whole),
 * as a sign and a magnitude. Returns 0, or a reason. */
static const char *number_to_integer(const char *s, size_t n, int *neg, uint64_t *mag) {
    size_t i = 0;
    *neg = 0;
    *mag = 0;
    if (s[0] == '-') *neg = 1, i = 1;
    const char *ip = s + i;
    size_t il = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, il++;
    const char *fp = s + i;
    size_t fl = 0;
    if (i < n && s[i] == '.') {
        fp = s + ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, fl++;
    }
    long long exp = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0;
        i++;
        if (s[i] == '+' || s[i] == '-') eneg = s[i++] == '-';
        for (; i < n; i++)
            if (exp < 1000000000) exp = exp * 10 + (s[i] - '0');
        if (eneg) exp = -exp;
    }
    /* The digits D = ip fp, value = D x 10^(exp - fl). */
    const size_t m = il + fl;
#define DIGIT(k) ((k) < il ? ip[(k)] : fp[(k)-il])
    size_t lz = 0, tz = 0;
    while (lz < m && DIGIT(lz) == '0')
        lz++;
    if (lz == m) return NULL; /* zero, whatever the exponent */
    while (DIGIT(m - 1 - tz) == '0')
        tz++;
    const size_t sd = m - lz - tz; /* significant digits */
    const long long e = exp - (long long)fl + (long long)tz;
    if (e < 0) return "is not a whole number";
    if ((long long)sd + e > 20) return "is out of range";
    uint64_t v = 0;
    for (size_t k = lz; k < m - tz; k++) {
        unsigned dg = (unsigned)(DIGIT(k) - '0');
        if (v > (UINT64_MAX - dg) / 10) return "is out of range";
        v = v * 10 + dg;
    }
#undef DIGIT
    for (long long k = 0; k < e; k++) {
        if (v > UINT64_MAX / 10) return "is out of range";
        v *= 10;
    }
    *mag = v;
    return NULL;
}

static const char *type_name(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
        return "int32";
    case PROTOBUF_C_TYPE_SINT32:
        return "sint32";
    case PROTOBUF_C_TYPE_SFIXED32:
        return "sfixed32";
    case PROTOBUF_C_TYPE_INT64:
        return "int64";
    case PROTOBUF_C_TYPE_SINT64:
        return "sint64";
    case PROTOBUF_C_TYPE_SFIXED64:
        return "sfixed64";
    case PROTOBUF_C_TYPE_UINT32:
        return "uint32";
    case PROTOBUF_C_TYPE_FIXED32:
        return "fixed32";
    case PROTOBUF_C_TYPE_UINT64:
        return "uint64";
    case PROTOBUF_C_TYPE_FIXED64:
        return "fixed64";
    case PROTOBUF_C_TYPE_FLOAT:
        return "float";
    case PROTOBUF_C_TYPE_DOUBLE:
        return "double";
    case PROTOBUF_C_TYPE_BOOL:
        return "bool";
    case PROTOBUF_C_TYPE_ENUM:
        return "enum";
    case PROTOBUF_C_TYPE_STRING:
        return "string";
    case PROTOBUF_C_TYPE_BYTES:
        return "bytes";
    case PROTOBUF_C_TYPE_MESSAGE:
        return "message";
    }
    return "?";
}

/* A number, bare or in a string, as text: *s points into the body or into
 * *owned (a decoded string the caller frees). *quoted says which. */
static int number_text(jdec_t *d, ProtobufCType t, const char **s, size_t *n, char **owned,
                       int *quoted) {
    *owned = NULL;
    *quoted = peek(d) == '"';
    if (*quoted) {
        if (jstring_alloc(d, 0, owned, n)) return -1;
        *s = *owned;
        return 0;
    }
    if (peek(d) == '-' || (peek(d) >= '0' && peek(d) <= '9')) return number_token(d, s, n);
    return jfail(d, "expected a number for %s, found %s", type_name(t), next_what(d));
}

/* A number that does not fit its field: the error quotes (at most 40
 * characters of) its text at its offset, and the decoded string is freed. */
static int number_fail(jdec_t *d, const char *at, ProtobufCType t, const char *s, size_t n,
                       int quoted, char *owned, const char *why) {
    d->p = at;
    jfail(d, "%s%.*s%s %s for %s", quoted ? "\"" : "", n > 40 ? 40 : (int)n, s,
          n > 40 ? "..." : (quoted ? "\"" : ""), why, type_name(t));
    free(owned);
    return -1;
}

static int read_integer(jdec_t *d, ProtobufCType t, void *dst) {
    const char *at = d->p, *s;
    size_t n;
    char *owned;
    int quoted;
    if (number_text(d, t, &s, &n, &owned, &quoted)) return -1;
    int neg = 0;
    uint64_t mag = 0;
    const char *why = NULL;
    if (quoted && (n == 0 || number_len(s, n) != n))
        why = "is not a number";
    else
        why = number_to_integer(s, n, &neg, &mag);
    if (!why) {
        uint64_t lim_pos, lim_neg; /* largest magnitudes */
        switch (t) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
            lim_pos = INT32_MAX, lim_neg = (uint64_t)INT32_MAX + 1;
            break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
            lim_pos = UINT32_MAX, lim_neg = 0;
            break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
            lim_pos = INT64_MAX, lim_neg = (uint64_t)INT64_MAX + 1;
            break;
        default:
            lim_pos = UINT64_MAX, lim_neg = 0;
            break;
        }
        if (mag > (neg ? lim_neg : lim_pos)) why = "is out of range";
    }
    if (why) return number_fail(d, at, t, s, n, quoted, owned, why);
    free(owned);
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *(int32_t *)dst = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)dst = (uint32_t)mag;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *(int64_t *)dst =
            neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
        break;
    default:
        *(uint64_t *)dst = mag;
        break;
    }
    return 0;
}

static int read_real(jdec_t *d, ProtobufCType t, void *dst) {
    const char *at = d->p, *s;
    size_t n;
    char *owned;
    int quoted;
    if (number_text(d, t, &s, &n, &owned, &quoted)) return -1;
    const int is_float = t == PROTOBUF_C_TYPE_FLOAT;
    double v = 0;
    float fv = 0;
    const char *why = NULL;
    if (quoted && n == 3 && !memcmp(s, "NaN", 3)) {
        v = NAN, fv = NAN;
    } else if (quoted && n == 8 && !memcmp(s, "Infinity", 8)) {
        v = INFINITY, fv = INFINITY;
    } else if (quoted && n == 9 && !memcmp(s, "-Infinity", 9)) {
        v = -INFINITY, fv = -INFINITY;
    } else if (quoted && (n == 0 || number_len(s, n) != n)) {
        why = "is not a number, \"NaN\", \"Infinity\" or \"-Infinity\"";
    } else {
        char small[64], *buf = n < sizeof small ? small : malloc(n + 1);
        if (!buf) {
            free(owned);
            return joom(d);
        }
        memcpy(buf, s, n);
        buf[n] = 0;
        /* strtof rounds once, as a float parser must (not via double). */
        if (is_float)
            fv = strtof(buf, NULL), v = fv;
        else
            v = strtod(buf, NULL);
        if (buf != small) free(buf);
        if (isinf(v)) why = "is out of range";
    }
    if (why) return number_fail(d, at, t, s, n, quoted, owned, why);
    free(owned);
    if (is_float)
        *(float *)dst = fv;
    else
        *(double *)dst = v;
    return 0;
}

static int read_enum(jdec_t *d, const ProtobufCEnumDescriptor *ed, int *dst) {
    const char *at = d->p;
    if (peek(d) == '"') {
        char *name;
        size_t n;
        if (jstring_alloc(d, 0, &name, &n)) return -1;
        const ProtobufCEnumValue *v =
            strlen(name) == n ? protobuf_c_enum_descriptor_get_value_by_name(ed, name) : NULL;
        if (!v) {
            d->p = at;
            jfail(d, "\"%.*s%s\" is not a value of %s", n > 40 ? 40 : (int)n, name,
                  n > 40 ? "..." : "", ed->name);
        } else {
            *dst = v->value;
        }
        free(name);
        return v ? 0 : -1;
    }
    if (peek(d) == '-' || (peek(d) >= '0' && peek(d) <= '9')) {
        int32_t v;
        if (read_integer(d, PROTOBUF_C_TYPE_INT32, &v)) return -1;
        *dst = v; /* proto3 enums are open: an unnamed number is kept */
        return 0;
    }
    return jfail(d, "expected a %s name or number, found %s", ed->name, next_what(d));
}

/* The 6-bit value of a base64 character of either alphabet, or -1. */
static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decodes standard or URL-safe base64, padded or not (one alphabet per
 * value). Returns NULL, or a reason (*bad: the offending position). */
static const char *base64_decode(const char *s, size_t n, uint8_t *out, size_t *out_len,
                                 size_t *bad) {
    int std = 0, url = 0;
    size_t pads = 0;
    while (pads < n && pads < 2 && s[n - 1 - pads] == '=')
        pads++;
    const size_t r = n - pads;
    *bad = 0;
    for (size_t i = 0; i < r; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+' || c == '/')
            std = 1;
        else if (c == '-' || c == '_')
            url = 1;
        else if (b64_value(c) < 0) {
            *bad = i;
            return c == '=' ? "has '=' before its end" : "has a character outside base64";
        }
        if (std && url) {
            *bad = i;
            return "mixes the standard (+/) and URL-safe (-_) alphabets";
        }
    }
    if (r % 4 == 1) return "has a length that no base64 text has";
    if (pads && (n % 4 != 0)) return "has the wrong amount of '=' padding";
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < r; i++) {
        unsigned v = (unsigned)b64_value((unsigned char)s[i]);
        acc = (acc << 6 | v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out_len = o;
    return NULL;
}

static int read_bytes(jdec_t *d, ProtobufCBinaryData *dst) {
    const char *at = d->p;
    if (peek(d) != '"')
        return jfail(d, "expected a base64 string for bytes, found %s", next_what(d));
    char *text;
    size_t n;
    if (jstring_alloc(d, 0, &text, &n)) return -1;
    size_t cap = n / 4 * 3 + 3, len = 0, bad;
    uint8_t *out = NULL;
    if (charge(d, cap)) {
        free(text);
        return -1;
    }
    out = malloc(cap);
    if (!out) {
        free(text);
        return joom(d);
    }
    const char *why = base64_decode(text, n, out, &len, &bad);
    free(text);
    if (why) {
        free(out);
        d->p = at;
        return jfail(d, "the base64 string %s (at character %zu)", why, bad);
    }
    if (len == 0) {
        free(out);
        out = NULL;
    }
    dst->data = out;
    dst->len = len;
    return 0;
}

static int read_message(jdec_t *d, const ProtobufCMessageDescriptor *desc, ProtobufCMessage *m);

/* A new message of type desc, linked at *slot before it is filled. */
static int read_submessage(jdec_t *d, const ProtobufCMessageDescriptor *desc,
                           ProtobufCMessage **slot) {
    if (peek(d) != '{')
        return jfail(d, "expected an object for %s, found %s", desc->name, next_what(d));
    if (charge(d, desc->sizeof_message)) return -1;
    ProtobufCMessage *m = malloc(desc->sizeof_message);
    if (!m) return joom(d);
    protobuf_c_message_init(desc, m);
    *slot = m;
    return read_message(d, desc, m);
}

/* One value of field f into dst (the member, or an array element). */
static int read_value(jdec_t *d, const ProtobufCFieldDescriptor *f, void *dst) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return read_integer(d, f->type, dst);
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return read_real(d, f->type, dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (take_literal(d, "true"))
            *(protobuf_c_boolean *)dst = 1;
        else if (take_literal(d, "false"))
            *(protobuf_c_boolean *)dst = 0;
        else
            return jfail(d, "expected true or false, found %s", next_what(d));
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return read_enum(d, f->descriptor, dst);
    case PROTOBUF_C_TYPE_STRING: {
        const char *at = d->p;
        char *s;
        size_t n;
        if (peek(d) != '"') return jfail(d, "expected a string, found %s", next_what(d));
        if (jstring_alloc(d, 1, &s, &n)) return -1;
        if (strlen(s) != n) {
            free(s);
            d->p = at;
            return jfail(d, "a string field cannot hold U+0000");
        }
        *(char **)dst = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return read_bytes(d, dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return read_submessage(d, f->descriptor, dst);
    }
    return jfail(d, "field of unknown type %d", (int)f->type);
}

static size_t element_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 8;
}

static int read_repeated(jdec_t *d, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    if (peek(d) != '[')
        return jfail(d, "expected an array (a repeated %s), found %s", type_name(f->type),
                     next_what(d));
    if (enter(d)) return -1;
    d->p++;
    size_t *count = (size_t *)((char *)m + f->quantifier_offset);
    void **array = (void **)((char *)m + f->offset);
    const size_t esz = element_size(f->type);
    size_t cap = 0;
    ws(d);
    if (peek(d) == ']') {
        d->p++;
        d->depth--;
        return 0;
    }
    for (;;) {
        ws(d);
        if (*count == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            if (ncap > SIZE_MAX / esz / 2) return jfail(d, "too many elements");
            if (charge(d, (ncap - cap) * esz)) return -1;
            void *grown = realloc(*array, ncap * esz);
            if (!grown) return joom(d);
            *array = grown;
            cap = ncap;
        }
        char *slot = (char *)*array + *count * esz;
        memset(slot, 0, esz);
        size_t saved = path_push(d, "[%zu]", *count);
        int rc;
        if (peek(d) == 'n' && take_literal(d, "null")) {
            d->p -= 4;
            rc = jfail(d, "null is not allowed in a repeated field");
        } else {
            rc = read_value(d, f, slot);
        }
        path_pop(d, saved);
        if (rc == 0 || (f->type == PROTOBUF_C_TYPE_MESSAGE && *(void **)slot)) (*count)++;
        if (rc) return -1;
        ws(d);
        if (peek(d) == ',') {
            d->p++;
            continue;
        }
        if (peek(d) == ']') {
            d->p++;
            d->depth--;
            return 0;
        }
        return jfail(d, "expected ',' or ']' after an array element, found %s", next_what(d));
    }
}

/* Whether the field keeps a has_ flag (proto2 optional and proto3
 * `optional` scalars and bytes). */
static int has_flag(const ProtobufCFieldDescriptor *f) {
    return f->label == PROTOBUF_C_LABEL_OPTIONAL && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static int read_field(jdec_t *d, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    if (peek(d) == 'n' && take_literal(d, "null")) return 0; /* the default */
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return read_repeated(d, m, f);
    void *member = (char *)m + f->offset;
    int rc = read_value(d, f, member);
    if (rc == 0 || (f->type == PROTOBUF_C_TYPE_MESSAGE && *(void **)member)) {
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            *(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
        else if (has_flag(f))
            *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
    }
    return rc;
}

/* Whether key (n bytes) is the lowerCamelCase JSON name of the proto field
 * name: underscores dropped, the letter after one upper-cased (protoc's
 * ToJsonName). */
static int is_json_name(const char *key, size_t n, const char *name) {
    size_t k = 0;
    int upper = 0;
    for (const char *c = name; *c; c++) {
        if (*c == '_') {
            upper = 1;
            continue;
        }
        char want = upper && *c >= 'a' && *c <= 'z' ? (char)(*c - 'a' + 'A') : *c;
        upper = 0;
        if (k >= n || key[k] != want) return 0;
        k++;
    }
    return k == n;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *desc,
                                                  const char *key, size_t n) {
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const char *name = desc->fields[i].name;
        if ((strlen(name) == n && !memcmp(name, key, n)) || is_json_name(key, n, name))
            return &desc->fields[i];
    }
    return NULL;
}

static int read_message(jdec_t *d, const ProtobufCMessageDescriptor *desc, ProtobufCMessage *m) {
    if (enter(d)) return -1;
    d->p++; /* '{' */
    unsigned char *seen = calloc(desc->n_fields ? desc->n_fields : 1, 1);
    if (!seen) return joom(d);
    int rc = 0;
    ws(d);
    if (peek(d) == '}') {
        d->p++;
        goto done;
    }
    for (;;) {
        ws(d);
        if (peek(d) != '"') {
            rc = jfail(d, "expected a field name in quotes, found %s", next_what(d));
            break;
        }
        const char *key_at = d->p;
        char *key;
        size_t kn;
        if (jstring_alloc(d, 0, &key, &kn)) {
            rc = -1;
            break;
        }
        ws(d);
        if (peek(d) != ':') {
            free(key);
            rc = jfail(d, "expected ':' after a field name, found %s", next_what(d));
            break;
        }
        d->p++;
        ws(d);
        const ProtobufCFieldDescriptor *f = find_field(desc, key, kn);
        if (!f) {
            /* Unknown: skipped, as Twirp's servers do (a newer client's
             * field); its value must still be JSON. */
            free(key);
            if (skip_value(d)) {
                rc = -1;
                break;
            }
        } else {
            size_t saved = d->path_len ? path_push(d, ".%s", key) : path_push(d, "%s", key);
            free(key);
            const size_t i = (size_t)(f - desc->fields);
            const uint32_t *oneof = (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                                        ? (const uint32_t *)((char *)m + f->quantifier_offset)
                                        : NULL;
            if (seen[i]) {
                d->p = key_at;
                rc = jfail(d, "the field is given twice");
            } else if (oneof && *oneof && *oneof != f->id && peek(d) != 'n') {
                const ProtobufCFieldDescriptor *other =
                    protobuf_c_message_descriptor_get_field(desc, *oneof);
                d->p = key_at;
                rc = jfail(d, "%s is already set, and only one field of their oneof may be",
                           other ? other->name : "another field");
            } else {
                seen[i] = 1;
                rc = read_field(d, m, f);
            }
            if (rc) break;
            path_pop(d, saved);
        }
        ws(d);
        if (peek(d) == ',') {
            d->p++;
            continue;
        }
        if (peek(d) == '}') {
            d->p++;
            break;
        }
        rc = jfail(d, "expected ',' or '}' after a field, found %s", next_what(d));
        break;
    }
done:
    free(seen);
    d->depth--;
    return rc;
}

int srv_json_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *json, size_t len,
                    const srv_json_limits_t *lim, ProtobufCMessage **out, srv_error_t *e) {
    *out = NULL;
    jdec_t d;
    memset(&d, 0, sizeof d);
    d.start = d.p = json ? (const char *)json : "";
    d.end = d.start + (json ? len : 0);
    d.type_name = desc->name;
    d.max_depth = lim->max_depth;
    d.max_bytes = lim->max_bytes;
    d.e = e;
    ws(&d);
    if (peek(&d) != '{')
        return jfail(&d, "expected an object (a %s), found %s", desc->name, next_what(&d));
    if (charge(&d, desc->sizeof_message)) return -1;
    ProtobufCMessage *m = malloc(desc->sizeof_message);
    if (!m) return joom(&d);
    protobuf_c_message_init(desc, m);
    if (read_message(&d, desc, m) == 0) {
        ws(&d);
        if (!at_end(&d)) jfail(&d, "%s after the object", next_what(&d));
    }
    if (d.failed) {
        protobuf_c_message_free_unpacked(m, NULL);
        return -1;
    }
    *out = m;
    return 0;
}

/* ------------------------------------------------------------- writing */

void srv_json_string(srv_strbuf_t *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    const size_t n = strlen(s);
    srv_strbuf_put(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t l = c < 0x80 ? 1 : utf8_len(u + i, n - i);
        if (l && c != '"' && c != '\\' && c >= 0x20) {
            run += l;
            i += l;
            continue;
        }
        if (run) srv_strbuf_put(b, s + i - run, run);
        run = 0;
        char esc[8] = {'\\', 0};
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            break;
        }
        if (esc[1]) {
            srv_strbuf_put(b, esc, 2);
        } else if (!l) {
            srv_strbuf_put(b, "\\ufffd", 6); /* not UTF-8: the replacement character */
        } else {
            char cc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            srv_strbuf_put(b, cc, 6);
        }
        i++;
    }
    if (run) srv_strbuf_put(b, s + n - run, run);
    srv_strbuf_put(b, "\"", 1);
}

static void put(srv_strbuf_t *o, const char *s, size_t n) {
    srv_strbuf_put(o, s, n);
}

static void puts_(srv_strbuf_t *o, const char *s) {
    srv_strbuf_puts(o, s);
}

static void put_string(srv_strbuf_t *o, const char *s) {
    srv_json_string(o, s);
}

static void put_json_name(srv_strbuf_t *o, const char *name) {
    put(o, "\"", 1);
    int upper = 0;
    for (const char *c = name; *c; c++) {
        if (*c == '_') {
            upper = 1;
            continue;
        }
        char ch = upper && *c >= 'a' && *c <= 'z' ? (char)(*c - 'a' + 'A') : *c;
        upper = 0;
        put(o, &ch, 1);
    }
    put(o, "\":", 2);
}

/* The shortest decimal that reads back as the same float (or double),
 * written as JavaScript writes numbers: plainly from 1e-6 up to 1e21
 * (20, 0.000015, 100000000000000000000), with an exponent otherwise (1e-7,
 * 3.4028235e38). */
static void put_real(srv_strbuf_t *o, double x, int is_float) {
    if (isnan(x)) {
        puts_(o, "\"NaN\"");
        return;
    }
    if (isinf(x)) {
        puts_(o, x > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    if (x == 0) {
        puts_(o, signbit(x) ? "-0" : "0");
        return;
    }
    char buf[320];                      /* %e of a double takes at most 24; GCC cannot tell */
    int lo = 1, hi = is_float ? 9 : 17; /* 9 / 17 digits always read back */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        snprintf(buf, sizeof buf, "%.*e", mid - 1, x);
        int same = is_float ? strtof(buf, NULL) == (float)x : strtod(buf, NULL) == x;
        if (same)
            hi = mid;
        else
            lo = mid + 1;
    }
    snprintf(buf, sizeof buf, "%.*e", lo - 1, x); /* [-]d[.ddd]e(+|-)dd */
    char digits[24], out[64];
    int nd = 0;
    size_t k = 0;
    const char *c = buf;
    if (*c == '-') out[k++] = *c++;
    for (; *c && *c != 'e' && nd < (int)sizeof digits; c++)
        if (*c != '.') digits[nd++] = *c;
    const int e10 = *c == 'e' ? atoi(c + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (e10 >= -6 && e10 < 21) {
        if (e10 >= 0) {
            for (int i = 0; i <= e10; i++)
                out[k++] = i < nd ? digits[i] : '0';
            if (nd > e10 + 1) out[k++] = '.';
            for (int i = e10 + 1; i < nd; i++)
                out[k++] = digits[i];
        } else {
            out[k++] = '0';
            out[k++] = '.';
            for (int i = 0; i < -e10 - 1; i++)
                out[k++] = '0';
            for (int i = 0; i < nd; i++)
                out[k++] = digits[i];
        }
    } else {
        out[k++] = digits[0];
        if (nd > 1) out[k++] = '.';
        for (int i = 1; i < nd; i++)
            out[k++] = digits[i];
        k += (size_t)snprintf(out + k, sizeof out - k, "e%d", e10);
    }
    put(o, out, k);
}

static void put_base64(srv_strbuf_t *o, const uint8_t *b, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char chunk[256];
    size_t k = 0;
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)b[i] << 16;
        if (i + 1 < n) v |= (unsigned)b[i + 1] << 8;
        if (i + 2 < n) v |= b[i + 2];
        chunk[k++] = abc[v >> 18];
        chunk[k++] = abc[(v >> 12) & 63];
        chunk[k++] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        chunk[k++] = i + 2 < n ? abc[v & 63] : '=';
        if (k == sizeof chunk) {
            put(o, chunk, k);
            k = 0;
        }
    }
    put(o, chunk, k);
    put(o, "\"", 1);
}

static void write_message(srv_strbuf_t *o, const ProtobufCMessage *m);

static void write_value(srv_strbuf_t *o, const ProtobufCFieldDescriptor *f, const void *v) {
    char buf[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(buf, sizeof buf, "%ld", (long)*(const int32_t *)v);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(buf, sizeof buf, "%lu", (unsigned long)*(const uint32_t *)v);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "\"%lld\"", (long long)*(const int64_t *)v);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "\"%llu\"", (unsigned long long)*(const uint64_t *)v);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        put_real(o, *(const float *)v, 1);
        return;
    case PROTOBUF_C_TYPE_DOUBLE:
        put_real(o, *(const double *)v, 0);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        puts_(o, *(const protobuf_c_boolean *)v ? "true" : "false");
        return;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)v);
        if (ev) {
            put_string(o, ev->name);
            return;
        }
        snprintf(buf, sizeof buf, "%d", *(const int *)v);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        put_string(o, s ? s : "");
        return;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = v;
        put_base64(o, b->data, b->data ? b->len : 0);
        return;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)v;
        if (sub)
            write_message(o, sub);
        else
            puts_(o, "{}");
        return;
    }
    default:
        snprintf(buf, sizeof buf, "null");
        break;
    }
    puts_(o, buf);
}

/* Whether the field is written: set (repeated: not empty; oneof: the chosen
 * member; has_ flag) or, for proto3 fields without presence, not at its
 * default (-0.0 is not the default: its bits differ). */
static int field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    const char *base = (const char *)m;
    const void *v = base + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)(base + f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) return *(void *const *)v != NULL;
    if (has_flag(f)) return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return f->type != PROTOBUF_C_TYPE_STRING || *(char *const *)v;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(char *const *)v;
        return s && s != f->default_value;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return *(const uint32_t *)v != 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)v != 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)v != 0 || signbit(*(const float *)v);
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)v != 0 || signbit(*(const double *)v);
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)v != 0;
    case PROTOBUF_C_TYPE_ENUM:
        return *(const int *)v != 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        return s && s[0];
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)v)->len > 0;
    default:
        return 0;
    }
}

static void write_message(srv_strbuf_t *o, const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *desc = m->descriptor;
    int first = 1;
    put(o, "{", 1);
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (!field_present(m, f)) continue;
        if (!first) put(o, ",", 1);
        first = 0;
        put_json_name(o, f->name);
        const char *member = (const char *)m + f->offset;
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            write_value(o, f, member);
            continue;
        }
        const size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
        const char *array = *(char *const *)member;
        const size_t esz = element_size(f->type);
        put(o, "[", 1);
        for (size_t k = 0; k < n; k++) {
            if (k) put(o, ",", 1);
            write_value(o, f, array + k * esz);
        }
        put(o, "]", 1);
    }
    put(o, "}", 1);
}

char *srv_json_encode(const ProtobufCMessage *m, size_t *len) {
    srv_strbuf_t o;
    srv_strbuf_init(&o);
    write_message(&o, m);
    if (o.failed) {
        free(o.p);
        return NULL;
    }
    *len = o.len;
    return o.p;
}
