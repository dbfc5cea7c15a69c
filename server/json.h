/* server: the proto3 JSON mapping (Twirp's application/json encoding, as
 * protojson writes and reads it) for any protobuf-c message, driven by the
 * message's descriptors. Private to server/.
 *
 * Output: field names in lowerCamelCase; fields at their proto3 default
 * (0, false, "", empty bytes, empty repeated, unset message) left out;
 * int64/uint64/fixed64 as strings, other integers and float/double as
 * numbers ("NaN", "Infinity", "-Infinity" as strings); enums as their
 * value names (a number when the value has no name); bytes as standard
 * padded base64; strings as UTF-8 with bytes that are not valid UTF-8
 * replaced by U+FFFD, so the output is always valid JSON.
 *
 * Input: strict JSON (RFC 8259) whose top level is an object. Field names
 * in lowerCamelCase or as in the .proto; unknown fields are skipped (after
 * their value is checked to be JSON), as Twirp's servers do; a field given
 * twice, or two members of one oneof, is an error; null means the field's
 * default. Integers as numbers or strings (1e3 and 7.0 are whole numbers;
 * 1.5 is not), range-checked for their type; floats as numbers or strings,
 * including "NaN", "Infinity", "-Infinity"; enums as names or numbers;
 * bytes in standard or URL-safe base64, padded or not.
 *
 * Not mapped: maps (protobuf-c describes them as repeated entry messages),
 * the well-known types (Timestamp, Duration, Any, wrappers, Struct) and
 * json_name options; service.proto uses none of them. */
#ifndef IMGRET_SERVER_JSON_H
#define IMGRET_SERVER_JSON_H

#include "server/server_internal.h"

#include <stddef.h>
#include <stdint.h>

#define SRV_JSON_MAX_DEPTH 64

typedef struct srv_json_limits {
    int max_depth;    /* objects and arrays nested deeper than this: malformed */
    size_t max_bytes; /* heap bytes the decoded message may take: beyond, malformed */
} srv_json_limits_t;

/* The server's limits for a body of body_len bytes: depth SRV_JSON_MAX_DEPTH,
 * and 8 x body_len + 1 MiB for the message (a legitimate request decodes
 * into less than its JSON text; a body of empty objects does not). */
void srv_json_limits_default(srv_json_limits_t *lim, size_t body_len);

/* Decodes the JSON text json (len bytes, not NUL-terminated; NULL when len
 * is 0) into a new message of type desc. On success *out is the message,
 * freed by protobuf_c_message_free_unpacked(*out, NULL). On failure *out is
 * NULL and *e is malformed (resource_exhausted when out of memory) with a
 * sentence naming the byte offset and the field path
 * ("imgret.v1.AddRequest JSON, offset 41, field items[0].vector.values[2]:
 * 1e99 is out of range for float"). Never reads past len. */
int srv_json_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *json, size_t len,
                    const srv_json_limits_t *lim, ProtobufCMessage **out, srv_error_t *e);

/* The message as compact JSON: a malloc'd NUL-terminated string (the caller
 * frees it) of *len bytes, or NULL when out of memory. */
char *srv_json_encode(const ProtobufCMessage *m, size_t *len);

/* Appends the NUL-terminated string s to b as a JSON string literal (quotes
 * included): '"' and '\\' escaped, control characters as \n, \t, ... or
 * \u00XX, bytes that are not valid UTF-8 as \ufffd. The one escaper of the
 * server: JSON replies and Twirp error bodies. */
void srv_json_string(srv_strbuf_t *b, const char *s);

#endif
