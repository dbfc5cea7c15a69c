/* The server limits both request-path unit tests check against: a 4-d
 * FC7, 16-bit codes with an autoencoder, 10 classes, k and uri bytes up to
 * 4096 (the index's), defaults otherwise. */
#ifndef IMGRET_TESTS_SERVER_TEST_LIMITS_H
#define IMGRET_TESTS_SERVER_TEST_LIMITS_H

#include "server/server_internal.h"

static srv_limits_t test_limits(void) {
    srv_limits_t l;
    srv_limits_default(&l);
    l.fc7_dim = 4;
    l.code_bits = 16;
    l.has_ae = 1;
    l.n_classes = 10;
    l.max_k = 4096;
    l.max_uri_bytes = 4096;
    return l;
}

#endif
