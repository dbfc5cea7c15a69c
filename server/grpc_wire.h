/* server: the pure parts of gRPC over HTTP/2 (grpc_wire.c): routing, the
 * grpc-timeout header, the 5-byte message framing, grpc-message's
 * percent-encoding and the two tiny grpc.health.v1 messages. No libevent,
 * no nghttp2: unit-tested and fuzzed alone. Private to server/. */
#ifndef IMGRET_SERVER_GRPC_WIRE_H
#define IMGRET_SERVER_GRPC_WIRE_H

#include "server/server_internal.h"

#include <stddef.h>
#include <stdint.h>

#define SRV_GRPC_PREFIX "/imgret.v1.ImageSearch/"
#define SRV_GRPC_HEALTH_CHECK "/grpc.health.v1.Health/Check"
#define SRV_GRPC_HEALTH_WATCH "/grpc.health.v1.Health/Watch"
#define SRV_GRPC_SERVICE "imgret.v1.ImageSearch"

/* Maps ":path /imgret.v1.ImageSearch/<Method>" to a method; anything else
 * is bad_route (gRPC status UNIMPLEMENTED through error.c's table). */
int srv_grpc_route(const char *path, srv_method_t *m, srv_error_t *e);

/* Whether a content-type header value is gRPC's: "application/grpc",
 * optionally "+proto" or ";params" (case-insensitive). */
int srv_grpc_content_type_ok(const char *value, size_t len);

/* Parses a grpc-timeout value (1 to 8 digits, then H M S m u n) into
 * seconds. 0 on success, -1 on anything else. */
int srv_grpc_parse_timeout(const char *value, size_t len, double *seconds);

/* The one request message of a unary call out of the stream's DATA bytes
 * (buf, len): a 1-byte compressed flag, a 4-byte big-endian length, the
 * message. compressed_ok: the call named a grpc-encoding other than
 * identity (this server does not decompress, so a set flag is then
 * unimplemented; without an encoding it is internal, as the gRPC spec says).
 * A length over max is resource_exhausted; no message, a short one or bytes
 * after it are malformed. On success points *msg into buf. */
int srv_grpc_unary_message(const uint8_t *buf, size_t len, int has_encoding, size_t max,
                           const uint8_t **msg, size_t *msg_len, srv_error_t *e);

/* The length a message prefix announces, once 5 bytes are there (-1 before). */
int64_t srv_grpc_prefix_length(const uint8_t *buf, size_t len);

/* Writes msg percent-encoded for grpc-message (bytes outside 0x20-0x7e and
 * '%' become %XX) into out, NUL-terminated, cut at a whole escape to fit
 * cap (> 0). Returns the length. */
size_t srv_grpc_percent_encode(const char *msg, char *out, size_t cap);

/* grpc.health.v1.HealthCheckRequest {string service = 1}: copies the
 * service name (unknown fields skipped) into out (cap bytes with the NUL).
 * 0 ok, -1 when it does not decode or the name does not fit. */
int srv_grpc_health_service(const uint8_t *msg, size_t len, char *out, size_t cap);

/* HealthCheckResponse {ServingStatus status = 1}: SERVING 1, NOT_SERVING 2,
 * SERVICE_UNKNOWN 3. */
#define SRV_GRPC_SERVING 1
#define SRV_GRPC_NOT_SERVING 2
#define SRV_GRPC_SERVICE_UNKNOWN 3 /* Watch only */
/* Writes the encoded response (2 bytes) into out[2]; returns 2. */
size_t srv_grpc_health_response(int status, uint8_t out[2]);

#endif
